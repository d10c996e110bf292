//! `format = "jq"`: an operator's jq program shapes the body. It gets the `standard` body and
//! **each output is one request**: no output sends nothing (a filter), several send several
//! (a fan-out). The language is jq as the `jaq` crates implement it (a maintained Rust jq).
//!
//! # Bounds
//! A jq program can run away: `def f: f; f` loops forever, `[range(1e12)]` eats memory and
//! `def f: 1 + f; f` overflows the stack, which aborts a process. So the agent never runs one
//! in its own process. It compiles it at config time (a program that does not compile is a
//! config error with jq's message), and runs it per event in a child, `curbside webhook
//! transform`, with an empty environment and:
//! - [`WALL`] of wall time (then the child is killed);
//! - [`CPU_S`] seconds of CPU (`RLIMIT_CPU`, set by the child on itself) and [`MEMORY`] of
//!   address space (`RLIMIT_AS`);
//! - at most [`MAX_OUTPUTS`] outputs and [`MAX_STDOUT`] bytes of them.
//!
//! Past any bound the event is parked on that endpoint with the reason in `status`; the agent
//! and the other endpoints carry on.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Wall time one run may take.
pub const WALL: Duration = Duration::from_secs(5);
/// CPU seconds one run may use (`rlim_t`: 32 bits on armv7).
pub const CPU_S: libc::rlim_t = 2;
/// Address space of the child, bytes.
pub const MEMORY: libc::rlim_t = 512 << 20;
/// Outputs (requests) one event may make.
pub const MAX_OUTPUTS: usize = 16;
/// Bytes of output one event may make.
pub const MAX_STDOUT: usize = 1 << 20;
/// Longest program, bytes.
pub const MAX_PROGRAM: usize = 64 << 10;

/// A program that compiles (checked once, at config time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    code: String,
}

/// Why a program was refused, or a run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JqError {
    /// It does not parse or compile: jq's message.
    #[error("does not compile: {0}")]
    Compile(String),
    /// The program raised an error, or the child failed.
    #[error("jq: {0}")]
    Run(String),
    /// A bound was passed (see the module docs).
    #[error("jq: {0}")]
    Bound(String),
    /// An output is not a JSON object or array.
    #[error("jq output {index} is {kind}, not an object or an array")]
    NotABody {
        /// Which output (from 0).
        index: usize,
        /// What it was.
        kind: &'static str,
    },
}

fn compile(code: &str) -> Result<jaq_core::Filter<data::JustLut<Val>>, JqError> {
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs).load(&arena, File { code, path: () }).map_err(|errs| {
        let mut why = Vec::new();
        for (_, e) in errs {
            match e {
                jaq_core::load::Error::Io(v) => why.extend(v.into_iter().map(|(_, m)| m)),
                jaq_core::load::Error::Lex(v) => {
                    why.extend(v.into_iter().map(|(exp, at)| format!("expected {} at {}", exp.as_str(), near(at))))
                }
                jaq_core::load::Error::Parse(v) => {
                    why.extend(v.into_iter().map(|(exp, at)| format!("expected {} at {}", exp.as_str(), near(at))))
                }
            }
        }
        JqError::Compile(why.join("; "))
    })?;
    Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
        let names: Vec<String> = errs
            .into_iter()
            .flat_map(|(_, v)| v.into_iter().map(|(name, undefined)| format!("{name} ({undefined:?})")))
            .collect();
        JqError::Compile(format!("undefined: {}", names.join(", ")))
    })
}

/// Where in the program an error is: the text that follows, shortened.
fn near(rest: &str) -> String {
    if rest.is_empty() {
        return "the end".into();
    }
    let cut: String = rest.chars().take(24).collect();
    format!("{cut:?}")
}

impl Program {
    /// Checks that `code` compiles.
    pub fn compile(code: &str) -> Result<Program, JqError> {
        if code.len() > MAX_PROGRAM {
            return Err(JqError::Compile(format!("is {} bytes; the limit is {MAX_PROGRAM}", code.len())));
        }
        compile(code)?;
        Ok(Program { code: code.to_string() })
    }

    /// The program's text.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs the program on `input` in this process, without the bounds: for the child
    /// (`curbside webhook transform`), which sets its own limits first. Each output as one line
    /// of JSON; stops after [`MAX_OUTPUTS`] + 1 outputs.
    pub fn run_here(&self, input: &[u8]) -> Result<Vec<String>, JqError> {
        let filter = compile(&self.code)?;
        let input =
            jaq_json::read::parse_single(input).map_err(|e| JqError::Run(format!("input is not JSON: {e:?}")))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
        let mut out = Vec::new();
        for v in filter.id.run((ctx, input)).map(unwrap_valr).take(MAX_OUTPUTS + 1) {
            match v {
                Ok(v) => out.push(v.to_string()),
                Err(e) => return Err(JqError::Run(e.to_string())),
            }
        }
        Ok(out)
    }
}

/// Sets the child's own limits (CPU seconds and address space) before it runs a program.
pub fn limit_this_process() -> Result<(), JqError> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CPU, CPU_S, CPU_S + 1).map_err(|e| JqError::Run(format!("RLIMIT_CPU: {e}")))?;
    setrlimit(Resource::RLIMIT_AS, MEMORY, MEMORY).map_err(|e| JqError::Run(format!("RLIMIT_AS: {e}")))?;
    Ok(())
}

/// How the agent starts the child: this binary (`curbside webhook transform`), or what a
/// test names (the binary under test, perhaps behind an emulator).
#[derive(Debug, Clone)]
pub struct Runner {
    program: PathBuf,
    args: Vec<OsString>,
}

/// The runner this process uses, when a test set one ([`Runner::use_for_this_process`]).
static CURRENT: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();

impl Runner {
    /// How this process runs transforms: the running binary, unless a test said otherwise.
    pub fn current() -> Runner {
        CURRENT.get().cloned().unwrap_or_else(Runner::this_binary)
    }

    /// Makes `self` the runner of this process (a test suite, whose own binary is not
    /// `curbside`); the first call wins.
    pub fn use_for_this_process(self) {
        let _ = CURRENT.set(self);
    }

    /// The running binary.
    pub fn this_binary() -> Runner {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("curbside"));
        Runner { program, args: Vec::new() }
    }

    /// `program` with `args` before `webhook transform ...`.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Runner {
        Runner { program: program.into(), args }
    }

    /// Runs `program` on `input` in a bounded child; the outputs, each a JSON object or array.
    pub async fn run(&self, program: &Program, input: &[u8]) -> Result<Vec<Value>, JqError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .args(["webhook", "transform", "--program"])
            .arg(&program.code)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| JqError::Run(format!("cannot start {}: {e}", self.program.display())))?;
        let (mut stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let input = input.to_vec();
        let work = async move {
            if let Some(s) = stdin.as_mut() {
                // A program that exits without reading its input closes the pipe: not an error.
                let _ = s.write_all(&input).await;
            }
            drop(stdin);
            let mut out = Vec::new();
            if let Some(s) = stdout {
                s.take(MAX_STDOUT as u64 + 1).read_to_end(&mut out).await.map_err(|e| JqError::Run(e.to_string()))?;
            }
            let mut err = Vec::new();
            if let Some(s) = stderr {
                let _ = s.take(4096).read_to_end(&mut err).await;
            }
            let status = child.wait().await.map_err(|e| JqError::Run(e.to_string()))?;
            Ok::<_, JqError>((status, out, err))
        };
        // Dropping `work` on the timeout drops the child, which kills it.
        let (status, out, err) = tokio::time::timeout(WALL, work)
            .await
            .map_err(|_| JqError::Bound(format!("the program ran for more than {WALL:?}; stopped")))??;
        if out.len() > MAX_STDOUT {
            return Err(JqError::Bound(format!("the program's output passed {MAX_STDOUT} bytes")));
        }
        if !status.success() {
            let why = String::from_utf8_lossy(&err).trim().to_string();
            let why = match (status.code(), why.is_empty()) {
                (_, false) => why,
                (Some(c), true) => format!("the transform exited with {c}"),
                (None, true) => "the transform was killed (CPU or memory limit)".to_string(),
            };
            return Err(JqError::Run(why));
        }
        let lines: Vec<&[u8]> = out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        if lines.len() > MAX_OUTPUTS {
            return Err(JqError::Bound(format!("the program made more than {MAX_OUTPUTS} outputs")));
        }
        lines
            .into_iter()
            .enumerate()
            .map(|(index, line)| {
                let v: Value = serde_json::from_slice(line)
                    .map_err(|e| JqError::Run(format!("output {index} is not JSON: {e}")))?;
                match &v {
                    Value::Object(_) | Value::Array(_) => Ok(v),
                    Value::Null => Err(JqError::NotABody { index, kind: "null" }),
                    Value::Bool(_) => Err(JqError::NotABody { index, kind: "a boolean" }),
                    Value::Number(_) => Err(JqError::NotABody { index, kind: "a number" }),
                    Value::String(_) => Err(JqError::NotABody { index, kind: "a string" }),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_does_not_compile_says_why() {
        let e = Program::compile(".data |").unwrap_err().to_string();
        assert!(e.starts_with("does not compile: expected term"), "{e}");
        let e = Program::compile("nosuchfilter(1)").unwrap_err().to_string();
        assert!(e.contains("nosuchfilter"), "{e}");
        assert!(Program::compile("{id: .data.id}, select(.type == \"x\")").is_ok());
    }

    #[test]
    fn outputs_are_each_one_line_and_errors_are_errors() {
        let p = Program::compile(".data.job_id, {a: 1}, [1, 2]").unwrap();
        assert_eq!(p.run_here(br#"{"data": {"job_id": "J1"}}"#).unwrap(), vec![r#""J1""#, r#"{"a":1}"#, "[1,2]"]);
        let p = Program::compile("select(.a == 2)").unwrap();
        assert!(p.run_here(br#"{"a": 1}"#).unwrap().is_empty(), "a filter that selects nothing");
        let p = Program::compile("error(\"no\")").unwrap();
        assert!(p.run_here(b"{}").is_err());
        let p = Program::compile("repeat(1)").unwrap();
        assert_eq!(p.run_here(b"{}").unwrap().len(), MAX_OUTPUTS + 1, "stops after one too many");
    }
}
