//! Every example configuration in `config/examples/` is valid and free of warnings.

use std::path::Path;

#[test]
fn example_configurations_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/examples exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let config = dataplane::config::Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(config.warnings().is_empty(), "{}: {:?}", path.display(), config.warnings());
            checked += 1;
        }
    }
    assert!(checked >= 4, "found {checked} examples");
}
