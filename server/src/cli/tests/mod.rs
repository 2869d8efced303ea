//! Tests of the command line (pure `parse`, no process env): helpers here, the chart's rendered
//! command lines in `chart`, the dialect, errors, env handling and help in `dialect`.

use super::flags::SERVE_FLAGS;
use super::serve::ServeConfig;
use super::{parse, Command, Invocation};
use crate::engine_args::Env;
use candela_engine::GenerationConfigMode;
use candela_models::WeightDType;
use serde_json::json;

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(args: Vec<String>, e: &Env) -> (ServeConfig, Invocation) {
    let inv = parse(&args, e).unwrap_or_else(|err| panic!("{args:?}: {}", err.message));
    match &inv.command {
        Command::Serve(c) => ((**c).clone(), inv),
        other => panic!("expected serve, got {other:?}"),
    }
}

fn serve(line: &str) -> (ServeConfig, Vec<String>) {
    let (c, inv) = run(argv(line), &Env::new());
    (c, inv.warnings)
}

fn err(args: Vec<String>) -> super::CliError {
    match parse(&args, &Env::new()) {
        Err(e) => e,
        Ok(inv) => panic!("{args:?} should fail, got {:?}", inv.command),
    }
}

fn has(warnings: &[String], needle: &str) -> bool {
    warnings.iter().any(|w| w.contains(needle))
}

mod chart;
mod dialect;
