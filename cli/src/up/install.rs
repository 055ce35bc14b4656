//! What `neurosphere up` installs before it starts anything, decided the way `scripts/test.sh`
//! decides it: the PostgreSQL server binaries unless `DATABASE_URL` names a server, and
//! espeak-ng (without it the local backend's greeting is a tone). It exists so that `up`, run
//! first on a fresh Debian machine, works instead of stopping with "install them".
//!
//! The decision ([`decide`]) is a pure function of what was found on the machine ([`Host`]), so
//! the unit tests below cover every situation (root, sudo, neither, no apt-get, `--no-install`)
//! without installing anything; [`prepare`] looks at the machine, prints the exact command and
//! runs it.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

/// Debian package of the PostgreSQL server binaries (`initdb`, `pg_ctl`); the test script
/// installs the same one.
const POSTGRES_PACKAGE: &str = "postgresql";
/// Debian package of the speech synthesiser the local backend greets callers with.
const ESPEAK_PACKAGE: &str = "espeak-ng";

/// What was found on this machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Host {
    /// `DATABASE_URL` is set: `up` uses that server and needs no local binaries.
    pub database_url: bool,
    /// `initdb` and `pg_ctl` were found.
    pub postgres: bool,
    /// `espeak-ng` runs.
    pub espeak: bool,
    /// We are root.
    pub root: bool,
    /// `sudo` is on PATH.
    pub sudo: bool,
    /// `apt-get` is on PATH (a Debian-like system).
    pub apt: bool,
}

/// What `up` does about missing software.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is missing.
    Ready,
    /// Run these commands, in order, printing each first.
    Install {
        /// The commands (argv), e.g. `sudo apt-get install -y postgresql espeak-ng`.
        commands: Vec<Vec<String>>,
        /// Whether `up` cannot go on without them (PostgreSQL); espeak-ng alone is optional.
        required: bool,
    },
    /// Only optional software is missing and will not be installed: say so and go on.
    Warn(String),
    /// PostgreSQL is missing and will not be installed: stop with this message.
    Refuse(String),
}

/// Decides what to install on `host`; `allowed` is false under `--no-install`.
pub fn decide(host: &Host, allowed: bool) -> Decision {
    let need_postgres = !host.database_url && !host.postgres;
    let mut packages = Vec::new();
    if need_postgres {
        packages.push(POSTGRES_PACKAGE);
    }
    if !host.espeak {
        packages.push(ESPEAK_PACKAGE);
    }
    if packages.is_empty() {
        return Decision::Ready;
    }
    let list = packages.join(" ");
    let why_not = if !allowed {
        Some(format!("--no-install was given; install {list} yourself"))
    } else if !host.apt {
        Some(format!(
            "this system has no apt-get (not Debian or Ubuntu): install {} with its package \
             manager",
            names(&packages)
        ))
    } else if !host.root && !host.sudo {
        Some(format!(
            "not root and no sudo: as root, run `apt-get install -y {list}`"
        ))
    } else {
        None
    };
    match why_not {
        None => Decision::Install {
            commands: commands(host.root, &packages),
            required: need_postgres,
        },
        Some(why) if need_postgres => Decision::Refuse(format!(
            "the PostgreSQL server binaries (initdb, pg_ctl) are not installed and `up` will not \
             install them: {why}; or set DATABASE_URL to an existing server"
        )),
        Some(why) => Decision::Warn(format!(
            "espeak-ng is not installed, so the simulated call's greeting is a tone: {why}"
        )),
    }
}

/// What each package is, for a reader on a system whose package names differ.
fn names(packages: &[&str]) -> String {
    packages
        .iter()
        .map(|p| match *p {
            POSTGRES_PACKAGE => "the PostgreSQL server binaries (initdb, pg_ctl)",
            _ => "espeak-ng",
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// `apt-get update` then a non-interactive install, through sudo unless we are root.
fn commands(root: bool, packages: &[&str]) -> Vec<Vec<String>> {
    let prefix: &[&str] = if root { &[] } else { &["sudo"] };
    let update = [prefix, &["apt-get", "update", "-qq"]].concat();
    let install = [
        prefix,
        &[
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-qq",
        ],
        packages,
    ]
    .concat();
    [update, install]
        .into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect()
}

/// Looks at this machine.
fn host() -> Host {
    Host {
        database_url: std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()),
        postgres: crate::localpg::installed(),
        espeak: Command::new("espeak-ng").arg("--version").output().is_ok(),
        root: crate::localpg::is_root(),
        sudo: on_path("sudo"),
        apt: on_path("apt-get"),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|dir| Path::new(&dir).join(program).is_file())
    })
}

/// Installs what `up` needs unless `allowed` is false, printing each command before it runs.
/// Fails only when PostgreSQL is needed and cannot be had.
pub fn prepare(allowed: bool) -> anyhow::Result<()> {
    match decide(&host(), allowed) {
        Decision::Ready => Ok(()),
        Decision::Warn(message) => {
            println!("  note: {message}");
            Ok(())
        }
        Decision::Refuse(message) => bail!("{message}"),
        Decision::Install { commands, required } => {
            for argv in commands {
                println!("  installing what `up` needs: {}", argv.join(" "));
                let ok = Command::new(&argv[0])
                    .args(&argv[1..])
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    continue;
                }
                let failed = format!("`{}` failed", argv.join(" "));
                if required {
                    bail!("{failed}; install PostgreSQL or set DATABASE_URL to an existing server");
                }
                println!("  note: {failed}; the simulated call's greeting will be a tone");
                return Ok(());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    const FRESH_ROOT: Host = Host {
        database_url: false,
        postgres: false,
        espeak: false,
        root: true,
        sudo: false,
        apt: true,
    };

    #[test]
    fn nothing_missing_installs_nothing() {
        let host = Host {
            postgres: true,
            espeak: true,
            ..FRESH_ROOT
        };
        assert_eq!(decide(&host, true), Decision::Ready);
        assert_eq!(decide(&host, false), Decision::Ready);
    }

    #[test]
    fn root_on_a_fresh_debian_installs_both_directly() {
        assert_eq!(
            decide(&FRESH_ROOT, true),
            Decision::Install {
                commands: vec![
                    argv("apt-get update -qq"),
                    argv(
                        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql espeak-ng"
                    ),
                ],
                required: true,
            }
        );
    }

    #[test]
    fn a_user_with_sudo_installs_through_sudo() {
        let host = Host {
            root: false,
            sudo: true,
            ..FRESH_ROOT
        };
        assert_eq!(
            decide(&host, true),
            Decision::Install {
                commands: vec![
                    argv("sudo apt-get update -qq"),
                    argv(
                        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql espeak-ng"
                    ),
                ],
                required: true,
            }
        );
    }

    #[test]
    fn database_url_means_no_postgres_package() {
        let host = Host {
            database_url: true,
            ..FRESH_ROOT
        };
        let Decision::Install { commands, required } = decide(&host, true) else {
            panic!("espeak-ng is still installed");
        };
        assert_eq!(commands[1].last().map(String::as_str), Some("espeak-ng"));
        assert!(!commands[1].iter().any(|a| a == "postgresql"));
        assert!(!required, "espeak-ng alone is optional");
    }

    #[test]
    fn no_install_refuses_without_postgres_and_names_the_way_out() {
        let Decision::Refuse(message) = decide(&FRESH_ROOT, false) else {
            panic!("PostgreSQL is required");
        };
        assert!(message.contains("--no-install"), "{message}");
        assert!(message.contains("postgresql espeak-ng"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }

    #[test]
    fn no_install_only_warns_when_espeak_alone_is_missing() {
        let host = Host {
            postgres: true,
            ..FRESH_ROOT
        };
        let Decision::Warn(message) = decide(&host, false) else {
            panic!("espeak-ng is optional");
        };
        assert!(message.contains("tone"), "{message}");
    }

    #[test]
    fn a_system_without_apt_get_is_told_what_to_install() {
        let host = Host {
            apt: false,
            ..FRESH_ROOT
        };
        let Decision::Refuse(message) = decide(&host, true) else {
            panic!("nothing can be installed without apt-get");
        };
        assert!(message.contains("no apt-get"), "{message}");
        assert!(message.contains("initdb, pg_ctl"), "{message}");
        assert!(message.contains("espeak-ng"), "{message}");
        let espeak_only = Host {
            postgres: true,
            ..host
        };
        assert!(
            matches!(decide(&espeak_only, true), Decision::Warn(m) if m.contains("no apt-get"))
        );
    }

    #[test]
    fn neither_root_nor_sudo_gives_the_command_to_run_as_root() {
        let host = Host {
            root: false,
            ..FRESH_ROOT
        };
        let Decision::Refuse(message) = decide(&host, true) else {
            panic!("cannot install without root");
        };
        assert!(
            message.contains("apt-get install -y postgresql espeak-ng"),
            "{message}"
        );
    }
}
