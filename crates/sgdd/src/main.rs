use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match sgdd::cli::run(sgdd::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sgdd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
