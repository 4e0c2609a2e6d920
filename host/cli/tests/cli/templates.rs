//! `percore new`: every template, made from scratch, built with its one documented command
//! (`sh build.sh`, with the tools `scripts/setup-language-toolchains.sh` installs), answers
//! `percore invoke`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{percore, stderr, stdout};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `sh build.sh` in `dir`, with the language toolchains first on PATH and none of the outer
/// cargo's settings.
fn build(dir: &Path) -> std::process::Output {
    let bin = root().join("target/toolchain/lang/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    let mut cmd = Command::new("sh");
    cmd.arg("build.sh")
        .current_dir(dir)
        .env("PATH", std::env::join_paths(dirs).unwrap());
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy().into_owned();
        if var.starts_with("CARGO_") || var.starts_with("RUSTC") || var == "RUSTFLAGS" {
            cmd.env_remove(var);
        }
    }
    cmd.output().expect("running sh build.sh")
}

/// The tool a template's build needs, in the toolchain folder (or, for Rust, the wasm target).
fn toolchain_ready(language: &str) -> bool {
    let bin = root().join("target/toolchain/lang/bin");
    match language {
        "rust" => std::fs::read_to_string(root().join("target/toolchain/guest.env"))
            .is_ok_and(|env| env.contains("MODE=rustup")),
        "python" => bin.join("componentize-py").exists(),
        "js" => bin.join("componentize-js").exists(),
        "c" => bin.join("wit-bindgen").exists(),
        "go" => bin.join("go").exists(),
        _ => false,
    }
}

#[test]
fn every_template_builds_from_scratch_and_answers() {
    let out = percore(&["new", "--list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    let languages: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(languages, ["rust", "python", "js", "c", "go"], "{listed}");
    let work = tempfile::tempdir().unwrap();
    for language in languages {
        if !toolchain_ready(language) {
            assert!(
                std::env::var("PERCORE_REQUIRE_LANGUAGES").as_deref() != Ok("1"),
                "no toolchain to build the {language} template"
            );
            eprintln!("skipped the {language} template: its toolchain is not installed");
            continue;
        }
        let name = format!("demo-{language}");
        let dir = work.path().join(&name);
        let out = percore(&["new", language, &name, "--dir", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{language}: {}", stderr(&out));
        assert!(stdout(&out).contains("sh build.sh"), "{}", stdout(&out));
        let built = build(&dir);
        assert!(
            built.status.success(),
            "{language}: sh build.sh failed:\n{}{}",
            stdout(&built),
            stderr(&built)
        );
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(
            wasm.exists(),
            "{language}: build.sh made no {}",
            wasm.display()
        );
        let out = percore(&[
            "invoke",
            wasm.to_str().unwrap(),
            "--path",
            "/?name=Ada",
            "--set",
            "greeting=Hi",
            "--body-only",
        ]);
        assert!(out.status.success(), "{language}: {}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{language}: {e}: {}", stdout(&out)));
        assert_eq!(doc["message"], "Hi, Ada!", "{language}");
        assert_eq!(doc["language"], language, "{language}");
    }
}

#[test]
fn new_refuses_what_it_cannot_make() {
    let work = tempfile::tempdir().unwrap();
    let out = percore(&["new", "cobol", "demo"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no template for `cobol`"),
        "{}",
        stderr(&out)
    );
    let out = percore(&["new", "python", "Bad_Name"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot name a guest project"),
        "{}",
        stderr(&out)
    );
    let taken = work.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    let out = percore(&["new", "go", "taken", "--dir", taken.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );
}
