//! The `candela` binary: parses the command line and dispatches to a subcommand.

mod bench;
mod engine_args;
mod generate;
mod random_model;

use clap::{Parser, Subcommand};

/// candela: an LLM inference engine with vLLM's interface.
#[derive(Debug, Parser)]
#[command(name = "candela", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate text offline from one prompt.
    Generate(generate::GenerateArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Write a random-weight checkpoint of a real model's shape (for benchmarks).
    MakeRandomModel(random_model::RandomModelArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Bench(b) => bench::run(b),
        Command::MakeRandomModel(a) => random_model::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
