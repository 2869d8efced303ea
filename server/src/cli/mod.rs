//! The command line, as one pure function (`parse`: argv + env map → what to run). The binary
//! answers to `candela` and, through a symlink, to `vllm` (argv[0]'s basename), so the vLLM
//! Production Stack's `vllm serve <model> --flags…` runs it unchanged. `serve` uses vLLM's
//! argument dialect over a flag table (`dialect`, `flags`, `serve`); `generate`, `bench` and
//! `make-random-model` use clap after the same name normalisation, with last-wins repeats.

pub mod dialect;
pub mod flags;
pub mod serve;
#[cfg(test)]
mod tests;

use crate::bench::BenchCommand;
use crate::engine_args::Env;
use crate::generate::GenerateArgs;
use crate::random_model::RandomModelArgs;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serve::{ServeConfig, ServeParse};

/// A command-line error: the message to print on stderr and the exit code (2 for usage errors,
/// as argparse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// Process exit code.
    pub code: i32,
    /// Full message.
    pub message: String,
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// What to run.
#[derive(Debug)]
pub enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(Box<ServeConfig>),
    /// Offline generation.
    Generate(GenerateArgs),
    /// Benchmarks.
    Bench(BenchCommand),
    /// Write a random-weight checkpoint.
    MakeRandomModel(RandomModelArgs),
    /// Print this text on stdout and exit 0 (help, version).
    Print(String),
}

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    /// What to run.
    pub command: Command,
    /// Warnings to log once (repeated flags, flags without effect here).
    pub warnings: Vec<String>,
    /// Informational lines to log at startup (the flags given).
    pub info: Vec<String>,
}

impl Invocation {
    fn plain(command: Command) -> Self {
        Invocation {
            command,
            warnings: Vec::new(),
            info: Vec::new(),
        }
    }
}

/// candela: an LLM inference engine with vLLM's interface.
#[derive(Debug, Parser)]
#[command(name = "candela", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: ClapCommand,
}

#[derive(Debug, Subcommand)]
enum ClapCommand {
    /// Start the OpenAI-compatible server: `serve <model> [vLLM flags]` (see `serve --help`).
    #[command(disable_help_flag = true)]
    Serve {
        /// Model and flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Generate text offline from one prompt.
    Generate(GenerateArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write a random-weight checkpoint of a real model's shape (for benchmarks).
    MakeRandomModel(RandomModelArgs),
}

/// Flags of the clap subcommands that collect every occurrence instead of keeping the last.
const APPEND_FLAGS: &[&str] = &["--stop"];

/// The program name from argv[0]: `vllm` when invoked under that name, else `candela`.
pub fn program_name(argv0: Option<&str>) -> &'static str {
    let base = argv0
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|b| b.to_str())
        .unwrap_or("");
    if base == "vllm" || base.starts_with("vllm.") {
        "vllm"
    } else {
        "candela"
    }
}

/// Parses the whole command line (`argv[0]` included) with `env` as the environment.
pub fn parse(argv: &[String], env: &Env) -> Result<Invocation, CliError> {
    let prog = program_name(argv.first().map(String::as_str));
    let rest = argv.get(1..).unwrap_or_default();
    match rest.first().map(String::as_str) {
        Some("serve") => {
            let sub = format!("{prog} serve");
            match serve::parse(&sub, &rest[1..], env) {
                Ok(ServeParse::Help(text)) => Ok(Invocation::plain(Command::Print(text))),
                Ok(ServeParse::Run {
                    config,
                    notes,
                    given,
                }) => {
                    let info = vec![format!("{sub} {} {}", config.engine.model, given.join(" "))
                        .trim_end()
                        .to_string()];
                    Ok(Invocation {
                        command: Command::Serve(config),
                        warnings: notes,
                        info,
                    })
                }
                Err(e) if e.code == 2 => Err(CliError::usage(format!(
                    "usage: {sub} [model_tag] [options]\n{sub}: error: {}\n",
                    e.message
                ))),
                Err(e) => Err(e),
            }
        }
        Some("--version") | Some("-v") => Ok(Invocation::plain(Command::Print(format!(
            "{}\n",
            env!("CARGO_PKG_VERSION")
        )))),
        _ => parse_clap(prog, rest),
    }
}

/// `generate`, `bench`, `make-random-model` and top-level help through clap, after normalising
/// flag names (`--a_b` → `--a-b`) and noting repeated flags.
fn parse_clap(prog: &'static str, rest: &[String]) -> Result<Invocation, CliError> {
    let mut args = vec![prog.to_string()];
    let mut seen: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    for a in rest {
        let t = dialect::normalize_token(a);
        if t.starts_with("--") && t.len() > 2 {
            let name = t.split('=').next().unwrap_or_default().to_string();
            if seen.contains(&name) && !APPEND_FLAGS.contains(&name.as_str()) {
                let w = format!("{name} was given more than once; the last value wins");
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            seen.push(name);
        }
        args.push(t);
    }
    let mut cmd = Cli::command().name(prog).bin_name(prog);
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return Err(clap_error(e)).or_else(help_as_print),
    };
    let command = match cli.command {
        ClapCommand::Serve { .. } => {
            return Err(CliError::usage(
                "serve must come first: `serve <model> [flags]`",
            ))
        }
        ClapCommand::Generate(a) => Command::Generate(a),
        ClapCommand::Bench(b) => Command::Bench(b),
        ClapCommand::MakeRandomModel(a) => Command::MakeRandomModel(a),
    };
    Ok(Invocation {
        command,
        warnings,
        info: Vec::new(),
    })
}

/// Help and version requests come back from clap as errors with exit code 0.
fn help_as_print(e: CliError) -> Result<Invocation, CliError> {
    if e.code == 0 {
        Ok(Invocation::plain(Command::Print(e.message)))
    } else {
        Err(e)
    }
}

fn clap_error(e: clap::Error) -> CliError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            return CliError::usage(format!(
                "error: unrecognized arguments: {arg}\n\nFor more information, try '--help'.\n"
            ));
        }
    }
    CliError {
        code: e.exit_code(),
        message: e.render().to_string(),
    }
}
