//! `cargo run -p xtask -- dist OUT`: what packages install besides the
//! binaries, generated from exliar's CLI definition (clap), offline:
//! `OUT/man/man1/exliar.1` and one page per subcommand (`exliar-vm-create.1`, …),
//! `OUT/completions/exliar.bash`, `_exliar` (zsh), `exliar.fish`.

use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, out] if cmd == "dist" => dist(Path::new(out)),
        _ => anyhow::bail!("usage: cargo run -p xtask -- dist OUT"),
    }
}

fn dist(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man/man1");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man).with_context(|| man.display().to_string())?;
    std::fs::create_dir_all(&comp).with_context(|| comp.display().to_string())?;
    // Every subcommand built: a run builds only the one it parses
    // (`#[command(defer = true)]`).
    let cmd = exliar::cli::full_command();
    let mut pages = 0;
    write_pages(&cmd, "exliar", &man, &mut pages)?;
    for (shell, name) in [
        (Shell::Bash, "exliar.bash"),
        (Shell::Zsh, "_exliar"),
        (Shell::Fish, "exliar.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut exliar::cli::full_command(), "exliar", &mut buf);
        let p = comp.join(name);
        std::fs::write(&p, buf).with_context(|| p.display().to_string())?;
    }
    eprintln!(
        "xtask: {pages} man pages in {}, completions for bash, zsh and fish in {}",
        man.display(),
        comp.display()
    );
    Ok(())
}

/// `exliar.1`, then `exliar-SUB.1` for every visible subcommand, recursively.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    pages: &mut usize,
) -> anyhow::Result<()> {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering {name}.1"))?;
    let p = dir.join(format!("{name}.1"));
    std::fs::write(&p, buf).with_context(|| p.display().to_string())?;
    *pages += 1;
    // clap's own `help` subcommands (present once built) get no page.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, pages)?;
    }
    Ok(())
}
