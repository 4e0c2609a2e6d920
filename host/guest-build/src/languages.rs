//! Guests in other languages than Rust (`examples-guests/greeter-*`, `conformance/guests/probe-*`):
//! each folder's `build.sh OUT` builds it with the tools of its language, which
//! `scripts/setup-language-toolchains.sh` installs into `target/toolchain/lang/bin`.
//!
//! A build is skipped when nothing it reads changed since the last one (the folder's files and
//! the WIT), since the Python and JavaScript ones take about 20 s each.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::Output;

/// One guest: its language, the tool its build needs, its folder and its name in target/guests.
struct LanguageGuest {
    language: &'static str,
    tool: &'static str,
    dir: &'static str,
    name: &'static str,
}

const GUESTS: &[LanguageGuest] = &[
    LanguageGuest {
        language: "python",
        tool: "componentize-py",
        dir: "examples-guests/greeter-python",
        name: "greeter-python",
    },
    LanguageGuest {
        language: "python",
        tool: "componentize-py",
        dir: "conformance/guests/probe-python",
        name: "probe-python",
    },
    LanguageGuest {
        language: "js",
        tool: "componentize-js",
        dir: "examples-guests/greeter-js",
        name: "greeter-js",
    },
    LanguageGuest {
        language: "js",
        tool: "componentize-js",
        dir: "conformance/guests/probe-js",
        name: "probe-js",
    },
    LanguageGuest {
        language: "c",
        tool: "wit-bindgen",
        dir: "examples-guests/greeter-c",
        name: "greeter-c",
    },
    LanguageGuest {
        language: "c",
        tool: "wit-bindgen",
        dir: "conformance/guests/probe-c",
        name: "probe-c",
    },
    LanguageGuest {
        language: "go",
        tool: "go",
        dir: "examples-guests/greeter-go",
        name: "greeter-go",
    },
    LanguageGuest {
        language: "go",
        tool: "go",
        dir: "conformance/guests/probe-go",
        name: "probe-go",
    },
];

/// Build every guest whose language's tools are installed; with `require`, a missing tool is
/// an error rather than a skipped guest.
pub(crate) fn build(root: &Path, require: bool, verbose: bool) -> anyhow::Result<Vec<Output>> {
    let bin = root.join("target/toolchain/lang/bin");
    let cache = root.join("target/guests-build-lang");
    std::fs::create_dir_all(&cache)?;
    let path = match std::env::var_os("PATH") {
        Some(path) => {
            let mut dirs = vec![bin.clone()];
            dirs.extend(std::env::split_paths(&path));
            std::env::join_paths(dirs)?
        }
        None => bin.clone().into_os_string(),
    };
    let mut outputs = Vec::new();
    let mut skipped = Vec::new();
    for guest in GUESTS {
        if !bin.join(guest.tool).exists() {
            skipped.push(guest.language);
            continue;
        }
        let dir = root.join(guest.dir);
        // The contract version the guest builds against: its own `wit` link (the languages'
        // guests link the 0.1.0 contract), else the current one.
        let wit = Some(dir.join("wit"))
            .filter(|w| w.exists())
            .unwrap_or_else(|| root.join("wit"));
        let fingerprint = fingerprint(&dir, &wit)?;
        let built = cache.join(format!("{}.wasm", guest.name));
        let stamp = cache.join(format!("{}.inputs", guest.name));
        let fresh = built.exists()
            && std::fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str());
        if !fresh {
            let output = Command::new("sh")
                .arg(dir.join("build.sh"))
                .arg(&built)
                .env("PATH", &path)
                .output()
                .with_context(|| format!("cannot run {}/build.sh", guest.dir))?;
            if verbose || !output.status.success() {
                eprint!("{}", String::from_utf8_lossy(&output.stdout));
                eprint!("{}", String::from_utf8_lossy(&output.stderr));
            }
            if !output.status.success() {
                bail!(
                    "building {} ({}) failed ({})",
                    guest.name,
                    guest.dir,
                    output.status
                );
            }
            std::fs::write(&stamp, &fingerprint)?;
        }
        outputs.push(Output {
            name: guest.name.to_owned(),
            bytes: std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?,
        });
    }
    skipped.dedup();
    if !skipped.is_empty() {
        let languages = skipped.join(" ");
        if require {
            bail!(
                "no toolchain for {languages} in {}: run `bash scripts/setup-language-toolchains.sh {languages}`",
                bin.display()
            );
        }
        println!(
            "  (skipped the {languages} guests: `bash scripts/setup-language-toolchains.sh {languages}` installs their tools)"
        );
    }
    Ok(outputs)
}

/// A digest of every file a guest's build reads: its folder (not what builds leave there) and
/// the WIT folder.
fn fingerprint(dir: &Path, wit: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for top in [dir, wit] {
        collect(top, top, &mut files)?;
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for (relative, path) in files {
        relative.hash(&mut hasher);
        std::fs::read(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

fn collect(top: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // The WIT comes in through its own folder; `gen` and caches are the builds' own.
        if ["wit", "gen", "__pycache__", "node_modules"].contains(&name.as_str())
            || name.ends_with(".wasm")
        {
            continue;
        }
        if path.is_dir() {
            collect(top, &path, files)?;
        } else {
            let relative = path
                .strip_prefix(top)
                .unwrap_or(&path)
                .display()
                .to_string();
            files.push((relative, path));
        }
    }
    Ok(())
}
