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
