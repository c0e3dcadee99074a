//! Long operations off the UI thread: each [`Job`] is a worker thread that
//! sends [`Msg`]s (output lines as they come, then its result) over a
//! channel the event loop pumps, so the screen never freezes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use crate::txn::{CommandRunner, Journal, NOT_RUN, SystemRunner, TestRunner};

/// What a finished job hands back.
#[derive(Debug)]
pub enum Done {
    /// `exliar check` again.
    Check(Box<super::data::CheckData>),
    /// An isolation plan applied (or the error, with the host's state).
    Applied(Result<Journal, String>),
    /// A transaction rolled back.
    RolledBack(Result<Journal, String>),
    /// `bind` / `unbind`: the outcome, or why it could not start.
    Bind(Result<crate::bind::Outcome, String>),
    /// The domains on the connection.
    VmList(Result<Vec<super::data::VmRow>, String>),
    /// An `exliar vm …` child: its exit code and everything it printed.
    Command {
        what: String,
        code: Option<i32>,
        output: String,
    },
}

#[derive(Debug)]
pub enum Msg {
    /// A line of output (a regeneration command's, a child's).
    Line(String),
    Done(Box<Done>),
}

/// A running job: its title (for the status line), its channel and thread.
#[derive(Debug)]
pub struct Job {
    pub title: String,
    pub rx: Receiver<Msg>,
    handle: Option<JoinHandle<()>>,
}

impl Job {
    /// Start `work` on a worker thread; it sends lines through the sender
    /// and returns its result.
    pub fn spawn(
        title: impl Into<String>,
        work: impl FnOnce(&Sender<Msg>) -> Done + Send + 'static,
    ) -> Job {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let done = work(&tx);
            let _ = tx.send(Msg::Done(Box::new(done)));
        });
        Job {
            title: title.into(),
            rx,
            handle: Some(handle),
        }
    }

    /// Wait for the worker thread to end.
    pub fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs the transaction's regeneration commands like [`SystemRunner`] (or
/// the debug builds' test runner, or not at all), sending every line they
/// print as it comes.
pub struct StreamingRunner {
    pub tx: Sender<Msg>,
    pub run: bool,
    test: Option<TestRunner>,
}

impl StreamingRunner {
    pub fn new(tx: Sender<Msg>, run: bool) -> Self {
        StreamingRunner {
            tx,
            run,
            test: TestRunner::from_env(),
        }
    }
    fn say(&self, line: String) {
        let _ = self.tx.send(Msg::Line(line));
    }
}

impl CommandRunner for StreamingRunner {
    fn run(&mut self, target: &Path, argv: &[String]) -> Result<String, String> {
        self.say(format!("$ {}", argv.join(" ")));
        if !self.run {
            self.say(format!("  {NOT_RUN}"));
            return Ok(NOT_RUN.to_string());
        }
        if let Some(t) = &mut self.test {
            let r = t.run(target, argv);
            match &r {
                Ok(o) | Err(o) => self.say(format!("  {o}")),
            }
            return r;
        }
        let Some(mut cmd) = SystemRunner::command(target, argv) else {
            return Ok(String::new());
        };
        stream(&mut cmd, &self.tx)
    }
}

/// Run `cmd` with stdin closed, sending each line of stdout and stderr as
/// it comes; `Ok` with all of it on exit 0, else `Err` with the status.
pub fn stream(cmd: &mut std::process::Command, tx: &Sender<Msg>) -> Result<String, String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{prog}: {e}"))?;
    let (ltx, lrx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(o) = child.stdout.take() {
        readers.push(reader(o, ltx.clone()));
    }
    if let Some(e) = child.stderr.take() {
        readers.push(reader(e, ltx.clone()));
    }
    drop(ltx);
    let mut all = String::new();
    for line in lrx {
        let _ = tx.send(Msg::Line(format!("  {line}")));
        all.push_str(&line);
        all.push('\n');
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(|e| format!("{prog}: {e}"))?;
    if status.success() {
        Ok(all)
    } else {
        Err(format!("exit {status}: {}", all.trim()))
    }
}

fn reader(r: impl Read + Send + 'static, tx: Sender<String>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    })
}

/// `exliar ARGS…` (the same binary's CLI), with `--root` first, as a job
/// that streams its output.
pub fn exliar_child(exliar: &Path, root: &Path, args: Vec<String>, what: String) -> Job {
    let exliar: PathBuf = exliar.to_path_buf();
    let root = root.to_path_buf();
    Job::spawn(what.clone(), move |tx| {
        let mut cmd = std::process::Command::new(&exliar);
        cmd.arg("--root").arg(&root).args(&args);
        // no colours, no prompts: the pane shows plain text
        cmd.env("NO_COLOR", "1");
        let _ = tx.send(Msg::Line(format!("$ exliar {}", args.join(" "))));
        let (code, output) = match stream(&mut cmd, tx) {
            Ok(o) => (Some(0), o),
            Err(e) => (exit_code(&e), e),
        };
        Done::Command { what, code, output }
    })
}

/// The exit code in [`stream`]'s error (`exit exit status: N: …`).
fn exit_code(err: &str) -> Option<i32> {
    let rest = err.strip_prefix("exit exit status: ")?;
    rest.split(':').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_sends_lines_and_exit_code() {
        let (tx, rx) = mpsc::channel();
        let mut c = std::process::Command::new("sh");
        c.args(["-c", "echo one; echo two >&2; exit 3"]);
        let r = stream(&mut c, &tx);
        drop(tx);
        let lines: Vec<String> = rx
            .iter()
            .filter_map(|m| match m {
                Msg::Line(l) => Some(l),
                Msg::Done(_) => None,
            })
            .collect();
        assert!(lines.contains(&"  one".to_string()), "{lines:?}");
        assert!(lines.contains(&"  two".to_string()), "{lines:?}");
        let e = r.expect_err("exit 3 is an error");
        assert_eq!(exit_code(&e), Some(3), "{e}");
    }
}
