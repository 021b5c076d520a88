//! Helpers the `sgdd` binary's test files share.

use std::path::Path;
use std::process::Output;

/// The stdout of a run that must succeed (stdout and stderr shown when it did not).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "sgdd failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path as the `&str` of a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
