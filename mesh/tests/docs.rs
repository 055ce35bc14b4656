//! Documentation that must stay in step with the code: the README's settings table is exactly
//! what `mesh::settings::markdown_table()` renders from the one list of settings.

#[test]
fn readme_settings_table_matches_the_catalog() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the repository root");
    let table = mesh::settings::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's settings table is out of date; replace it with the output of `neurosphere settings`:\n{table}"
    );
    for s in mesh::settings::catalog::ALL {
        assert!(
            readme.contains(&format!("`{}`", s.name)),
            "{} missing",
            s.name
        );
    }
}

/// Every test SECURITY.md cites exists where it says (`path::function`).
#[test]
fn security_md_cites_existing_tests() {
    assert!(cited_tests_exist("SECURITY.md") > 40);
}

/// Every test RELIABILITY.md cites exists.
#[test]
fn reliability_md_cites_existing_tests() {
    assert!(cited_tests_exist("RELIABILITY.md") > 10);
}

/// Checks the `file.rs::function` citations in a table of `name`; returns how many.
fn cited_tests_exist(name: &str) -> usize {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/{name}")).expect("document");
    let mut checked = 0;
    for row in doc
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(".rs"))
    {
        let mut current_file: Option<String> = None;
        for cell in row.split('`').skip(1).step_by(2) {
            let (file, func) = match cell.split_once("::") {
                Some((f, name)) if f.ends_with(".rs") => (Some(f.to_owned()), Some(name)),
                None if cell.ends_with(".rs") => (Some(cell.to_owned()), None),
                None => (None, Some(cell)),
                _ => (None, None),
            };
            if let Some(f) = file {
                current_file = Some(f);
            }
            let (Some(file), Some(func)) = (&current_file, func) else {
                continue;
            };
            if file.contains('{')
                || !func
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            {
                continue;
            }
            let text = std::fs::read_to_string(format!("{root}/{file}"))
                .unwrap_or_else(|_| panic!("{name} cites missing file {file}"));
            assert!(
                text.contains(&format!("fn {func}(")),
                "{name} cites {file}::{func}, which does not exist"
            );
            checked += 1;
        }
    }
    checked
}
