//! How the bench binaries start and end: their flags parsed under their own name, the
//! `--json` file written, and the exit code that says whether every run worked.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// Parses the flags of the bench binary `name` (an `Args` that flattens
/// [`BenchFlags`](crate::flags::BenchFlags)) as clap's `Parser::parse` does, with `name`
/// as the command's name and `cargo bench --bench NAME -- [OPTIONS]` as its usage line;
/// exits with clap's message on a bad flag or `--help`.
pub fn parse_args<A: clap::Parser>(name: &'static str) -> A {
    try_parse_args(name, std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse_args`] of the command line `args` (the program first), with clap's error.
fn try_parse_args<A: clap::Parser, T: Into<OsString> + Clone>(
    name: &'static str,
    args: impl IntoIterator<Item = T>,
) -> Result<A, clap::Error> {
    let mut command = A::command()
        .name(name)
        .override_usage(format!("cargo bench --bench {name} -- [OPTIONS]"));
    let mut matches = command.try_get_matches_from_mut(args)?;
    A::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

/// Writes `doc` to `path` as pretty-printed JSON; when it cannot, says why on stderr and
/// gives the exit code to end with.
pub fn write_json(path: &Path, doc: &serde_json::Value) -> Result<(), ExitCode> {
    std::fs::write(path, serde_json::to_string_pretty(doc).unwrap()).map_err(|e| {
        eprintln!("cannot write {}: {e}", path.display());
        ExitCode::FAILURE
    })
}

/// Success when nothing failed; otherwise each failure on stderr, and failure.
pub fn exit_code(failures: &[String]) -> ExitCode {
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in failures {
            eprintln!("failed: {f}");
        }
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::BenchFlags;

    #[derive(Debug, clap::Parser)]
    struct Args {
        #[command(flatten)]
        common: BenchFlags,
    }

    #[test]
    fn flags_parse_under_the_binarys_name_and_usage() {
        let args: Args = try_parse_args("throughput", ["x", "--steps", "3", "--bench"]).unwrap();
        assert_eq!(args.common.steps, 3);
        let err = try_parse_args::<Args, _>("throughput", ["x", "--no-such-flag"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("Usage: cargo bench --bench throughput -- [OPTIONS]"),
            "{err}"
        );
        let help = try_parse_args::<Args, _>("side_by_side", ["x", "--help"]).unwrap_err();
        assert!(help.to_string().contains("--wait-quiet"), "{help}");
    }

    #[test]
    fn a_json_file_that_cannot_be_written_is_a_failure() {
        let dir = std::env::temp_dir().join("catgan-devtools-no-such-folder/x/y.json");
        assert!(write_json(&dir, &serde_json::json!({})).is_err());
        assert_eq!(exit_code(&[]), ExitCode::SUCCESS);
        assert_eq!(exit_code(&["x".into()]), ExitCode::FAILURE);
    }
}
