//! `candela bench`: the `vllm bench` family.
//! - `latency`: one batch in process, with the memory-bandwidth roofline of this machine;
//! - `throughput`: N random prompts submitted at once to an in-process engine;
//! - `serve`: a load generator for any OpenAI-compatible server (streaming, vLLM's metrics,
//!   result JSON and printed summary).

mod arrivals;
mod client;
mod dataset;
mod latency;
mod metrics;
mod serve;
mod throughput;

use clap::Subcommand;

pub use latency::LatencyArgs;
pub use serve::ServeArgs;
pub use throughput::ThroughputArgs;

/// `candela bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Latency of one batch of requests, in process.
    Latency(LatencyArgs),
    /// Load an OpenAI-compatible server and report TTFT, TPOT, ITL, E2EL and throughput.
    Serve(Box<ServeArgs>),
    /// Offline throughput: N random prompts submitted at once to an in-process engine.
    Throughput(ThroughputArgs),
}

/// Runs a bench subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Latency(a) => latency::run(a),
        BenchCommand::Serve(a) => serve::run(*a),
        BenchCommand::Throughput(a) => throughput::run(a),
    }
}
