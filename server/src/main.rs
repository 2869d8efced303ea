//! The `candela` binary (also run as `vllm` through a symlink): reads argv and the environment
//! once, parses them (`cli::parse`), sets up logging, and dispatches to a subcommand.

mod bench;
mod cli;
mod engine_args;
mod generate;
mod http;
mod random_model;

use cli::Command;
use engine_args::Env;

/// Log filter: RUST_LOG, else VLLM_LOGGING_LEVEL (DEBUG, INFO, WARNING, ...), else info.
fn init_tracing(env: &Env) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = match engine_args::env_var(env, "VLLM_LOGGING_LEVEL")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("debug") => "debug",
            Some("trace") => "trace",
            Some("warning" | "warn") => "warn",
            Some("error" | "critical") => "error",
            _ => "info",
        };
        level.into()
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env = engine_args::process_env();
    init_tracing(&env);
    let inv = match cli::parse(&argv, &env) {
        Ok(inv) => inv,
        Err(e) => {
            eprint!("{}", e.message);
            if !e.message.ends_with('\n') {
                eprintln!();
            }
            std::process::exit(e.code);
        }
    };
    for line in &inv.info {
        tracing::info!("{line}");
    }
    for w in &inv.warnings {
        tracing::warn!("{w}");
    }
    let result = match inv.command {
        Command::Print(text) => {
            print!("{text}");
            Ok(())
        }
        Command::Serve(cfg) => cli::serve::run(*cfg),
        Command::Generate(a) => generate::run(a),
        Command::Bench(b) => bench::run(b),
        Command::MakeRandomModel(a) => random_model::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
