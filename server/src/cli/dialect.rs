//! vLLM's argument dialect (its `FlexibleArgumentParser` on top of argparse), as a pure parser
//! over a flag table: `--a_b` ≡ `--a-b` (names only, never values), `--no-<flag>` for booleans,
//! `--flag=value`, last-wins repeats with a warning, `nargs='+'` lists, JSON flags set whole or
//! key by key (`--kv-transfer-config.kv_role kv_producer`, `--x.list+ a,b`), `None` for nullable
//! flags, human-readable integers (`32k`), argparse's error texts.

use super::flags::{by_alias, by_name, FlagSpec, Kind};
use super::CliError;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A parsed flag value.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagValue {
    /// A boolean flag.
    Bool(bool),
    /// A nullable flag given as `None`.
    Null,
    /// A string or choice.
    Str(String),
    /// An integer (human-readable forms already expanded; `auto` is -1).
    Int(i64),
    /// A float.
    Float(f64),
    /// A multi-valued flag.
    List(Vec<String>),
    /// A JSON flag (whole value and dotted keys merged).
    Json(Value),
}

/// The result of parsing one subcommand's arguments.
#[derive(Debug, Default)]
pub struct ParsedArgs {
    /// Positional arguments, in order.
    pub positionals: Vec<String>,
    /// Given flags by long name (last value wins).
    pub values: BTreeMap<&'static str, FlagValue>,
    /// Warnings to log (repeated flags, duplicate JSON keys).
    pub warnings: Vec<String>,
    /// `Some(keyword)` when help was asked for (`Some(None)` = plain `--help`).
    pub help: Option<Option<String>>,
}

/// Rewrites the name part of a `--flag` token to dash form: underscores become dashes from the
/// `--` up to the first `.` or `=`, so values and dotted JSON keys keep their underscores.
pub fn normalize_token(arg: &str) -> String {
    let Some(rest) = arg.strip_prefix("--") else {
        return arg.to_string();
    };
    let end = rest.find(['.', '=']).unwrap_or(rest.len());
    format!("--{}{}", rest[..end].replace('_', "-"), &rest[end..])
}

/// Whether argparse would take `tok` as a value rather than an option: anything not starting
/// with `-`, a lone `-`, or a negative number.
fn is_value_token(tok: &str) -> bool {
    !tok.starts_with('-') || tok == "-" || tok.parse::<f64>().is_ok()
}

/// Parses `1000`, `32k` (×1000), `32K` (×1024), `1.5m` (decimal suffixes only take fractions).
pub fn human_readable_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Some(v);
    }
    let (num, suffix) = s.split_at(s.len().checked_sub(1)?);
    let pow = |c: char| "kmgt".find(c.to_ascii_lowercase()).map(|i| i as u32 + 1);
    let c = suffix.chars().next()?;
    let exp = pow(c)?;
    if num.is_empty() || !num.chars().all(|ch| ch.is_ascii_digit() || ch == '.') {
        return None;
    }
    if c.is_ascii_lowercase() {
        let v: f64 = num.parse().ok()?;
        let r = v * 1000f64.powi(exp as i32);
        (r.is_finite() && r < i64::MAX as f64).then_some(r as i64)
    } else {
        let v: i64 = num.parse().ok()?;
        v.checked_mul(1i64.checked_shl(10 * exp)?)
    }
}

fn flag_label(spec: &FlagSpec) -> String {
    match (spec.kind, spec.alias) {
        (Kind::Bool, _) => format!("--{0}/--no-{0}", spec.name),
        (_, Some(a)) => format!("--{}/{a}", spec.name),
        _ => format!("--{}", spec.name),
    }
}

fn arg_error(spec: &FlagSpec, msg: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("argument {}: {msg}", flag_label(spec)))
}

/// Converts one raw value of `spec` to its typed form (argparse's `type=` and `choices=`).
fn convert(spec: &FlagSpec, raw: &str) -> Result<FlagValue, CliError> {
    if spec.nullable && (raw.is_empty() || raw == "None") {
        return Ok(FlagValue::Null);
    }
    match spec.kind {
        Kind::Str => Ok(FlagValue::Str(raw.to_string())),
        Kind::Int => raw
            .trim()
            .parse()
            .map(FlagValue::Int)
            .map_err(|_| arg_error(spec, format!("invalid int value: '{raw}'"))),
        Kind::Float => match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(FlagValue::Float(v)),
            _ => Err(arg_error(spec, format!("invalid float value: '{raw}'"))),
        },
        Kind::HumanInt => human_readable_int(raw)
            .map(FlagValue::Int)
            .ok_or_else(|| arg_error(spec, format!("invalid human_readable_int value: '{raw}'"))),
        Kind::HumanIntOrAuto => {
            if raw.trim().eq_ignore_ascii_case("auto") {
                return Ok(FlagValue::Int(-1));
            }
            human_readable_int(raw).map(FlagValue::Int).ok_or_else(|| {
                arg_error(
                    spec,
                    format!("invalid human_readable_int_or_auto value: '{raw}'"),
                )
            })
        }
        Kind::Choice(choices) => {
            if choices.contains(&raw) {
                Ok(FlagValue::Str(raw.to_string()))
            } else {
                let mut all: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
                if spec.nullable {
                    all.push("'None'".into());
                }
                Err(arg_error(
                    spec,
                    format!("invalid choice: '{raw}' (choose from {})", all.join(", ")),
                ))
            }
        }
        Kind::Json => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => Ok(FlagValue::Json(v)),
            Ok(_) => Err(arg_error(
                spec,
                format!("expected a JSON object, got '{raw}'"),
            )),
            Err(e) => Err(arg_error(spec, format!("invalid JSON value '{raw}': {e}"))),
        },
        Kind::Bool | Kind::Multi => Ok(FlagValue::Str(raw.to_string())),
    }
}

/// A dotted value: JSON if it parses, else a human-readable int, else the string.
fn dotted_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| {
        human_readable_int(raw)
            .map(Value::from)
            .unwrap_or_else(|| Value::String(raw.to_string()))
    })
}

/// Deep-merges `update` into `base`; lists append; returns overwritten key paths.
fn merge(base: &mut Map<String, Value>, update: Map<String, Value>) -> Vec<String> {
    let mut dups = Vec::new();
    for (k, v) in update {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(u)) => {
                dups.extend(merge(b, u).into_iter().map(|d| format!("{k}.{d}")))
            }
            (Some(Value::Array(b)), Value::Array(u)) => b.extend(u),
            (old, v) => {
                if old.is_some() {
                    dups.push(k.clone());
                }
                base.insert(k, v);
            }
        }
    }
    dups
}

struct State {
    out: ParsedArgs,
    dotted: BTreeMap<&'static str, Map<String, Value>>,
    /// (argv index, token) of arguments argparse would not recognise.
    unrecognized: Vec<(usize, String)>,
    positional_idx: Vec<usize>,
}

impl State {
    fn set(&mut self, spec: &'static FlagSpec, v: FlagValue) {
        if self.out.values.insert(spec.name, v).is_some() {
            let w = format!(
                "--{} was given more than once; the last value wins",
                spec.name
            );
            if !self.out.warnings.contains(&w) {
                self.out.warnings.push(w);
            }
        }
    }
}

/// Parses `args` (the tokens after the subcommand) against `specs`. Unknown flags and surplus
/// positionals (beyond `max_positionals`) give argparse's `unrecognized arguments: …` error.
pub fn parse(
    args: &[String],
    specs: &'static [FlagSpec],
    max_positionals: usize,
) -> Result<ParsedArgs, CliError> {
    let mut st = State {
        out: ParsedArgs::default(),
        dotted: BTreeMap::new(),
        unrecognized: Vec::new(),
        positional_idx: Vec::new(),
    };
    // Like argparse's help action, --help wins over any error elsewhere on the line.
    let help = args
        .iter()
        .take_while(|a| *a != "--")
        .find_map(|a| match a.as_str() {
            "-h" | "--help" => Some(None),
            _ => a.strip_prefix("--help=").map(|k| Some(k.to_string())),
        });
    if help.is_some() {
        st.out.help = help;
        return Ok(st.out);
    }
    let mut i = 0;
    let mut only_positionals = false;
    while i < args.len() {
        let raw = &args[i];
        let idx = i;
        i += 1;
        if only_positionals || is_value_token(raw) {
            st.out.positionals.push(raw.clone());
            st.positional_idx.push(idx);
            continue;
        }
        if raw == "--" {
            only_positionals = true;
            continue;
        }
        let tok = normalize_token(raw);
        let (name_part, inline) = match tok.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (tok.clone(), None),
        };
        let bare = name_part.trim_start_matches('-');
        // Dotted JSON keys: --kv-transfer-config.kv_role kv_producer, --x.list+ a,b.
        if let Some((base, path)) = bare.split_once('.') {
            let Some(spec) = by_name(specs, base).filter(|_| name_part.starts_with("--")) else {
                st.unrecognized.push((idx, raw.clone()));
                continue;
            };
            if spec.kind != Kind::Json {
                return Err(arg_error(
                    spec,
                    format!("does not take dotted keys ('{raw}')"),
                ));
            }
            let value_raw = match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => {
                    return Err(CliError::usage(format!(
                        "argument {name_part}: expected one argument"
                    )))
                }
            };
            let (path, append) = match path.strip_suffix('+') {
                Some(p) => (p, true),
                None => (path, false),
            };
            let mut value = if append {
                Value::Array(
                    value_raw
                        .split(',')
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                )
            } else {
                dotted_value(&value_raw)
            };
            for key in path.rsplit('.') {
                let mut m = Map::new();
                m.insert(key.to_string(), value);
                value = Value::Object(m);
            }
            let Value::Object(update) = value else {
                continue;
            };
            let dups = merge(st.dotted.entry(spec.name).or_default(), update);
            for d in dups {
                st.out.warnings.push(format!(
                    "--{}.{d} was given more than once; the last value wins",
                    spec.name
                ));
            }
            continue;
        }
        let long = name_part.starts_with("--");
        let found = if long {
            by_name(specs, bare)
        } else {
            by_alias(specs, &name_part)
        };
        let (spec, negated) = match found {
            Some(s) => (s, false),
            None => match bare
                .strip_prefix("no-")
                .and_then(|b| by_name(specs, b))
                .filter(|s| s.kind == Kind::Bool && long)
            {
                Some(s) => (s, true),
                None => {
                    st.unrecognized.push((idx, raw.clone()));
                    continue;
                }
            },
        };
        match spec.kind {
            Kind::Bool => {
                if let Some(v) = inline {
                    return Err(arg_error(spec, format!("ignored explicit argument '{v}'")));
                }
                st.set(spec, FlagValue::Bool(!negated));
            }
            Kind::Multi => {
                let mut vals = Vec::new();
                if let Some(v) = inline {
                    vals.push(v);
                } else {
                    while i < args.len() && is_value_token(&args[i]) {
                        vals.push(args[i].clone());
                        i += 1;
                    }
                }
                if vals.is_empty() {
                    return Err(arg_error(spec, "expected at least one argument"));
                }
                let v = if spec.nullable
                    && vals.len() == 1
                    && (vals[0] == "None" || vals[0].is_empty())
                {
                    FlagValue::Null
                } else {
                    FlagValue::List(vals)
                };
                st.set(spec, v);
            }
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None if i < args.len() && is_value_token(&args[i]) => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => return Err(arg_error(spec, "expected one argument")),
                };
                let v = convert(spec, &value)?;
                st.set(spec, v);
            }
        }
    }
    finish(st, max_positionals)
}

fn finish(mut st: State, max_positionals: usize) -> Result<ParsedArgs, CliError> {
    for (name, update) in std::mem::take(&mut st.dotted) {
        let mut base = match st.out.values.remove(name) {
            Some(FlagValue::Json(Value::Object(m))) => m,
            _ => Map::new(),
        };
        for d in merge(&mut base, update) {
            st.out
                .warnings
                .push(format!("--{name}.{d} overrides the same key of --{name}"));
        }
        st.out
            .values
            .insert(name, FlagValue::Json(Value::Object(base)));
    }
    let extra = st.out.positionals.len().saturating_sub(max_positionals);
    if extra > 0 {
        let start = st.out.positionals.len() - extra;
        for (k, p) in st.out.positionals.drain(start..).enumerate() {
            st.unrecognized.push((st.positional_idx[start + k], p));
        }
    }
    if !st.unrecognized.is_empty() {
        st.unrecognized.sort_by_key(|(i, _)| *i);
        let list: Vec<String> = st.unrecognized.into_iter().map(|(_, t)| t).collect();
        return Err(CliError::usage(format!(
            "unrecognized arguments: {}",
            list.join(" ")
        )));
    }
    Ok(st.out)
}
