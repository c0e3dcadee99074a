//! Build facts for `exliar --version`: the git commit (from the checkout,
//! else `EXLIAR_GIT_COMMIT`, else `unknown` — a release tarball), the
//! target and the profile. No network, no git needed.
//!
//! And `data/gpu-db.toml` as a Rust `static` (`OUT_DIR/gpu-db.rs`, included
//! by `src/analyze/db.rs`): every bind, handover and analysis reads the
//! database, and a static costs nothing at run time (parsing the TOML took
//! ~390 000 instructions, the JSON it replaced ~128 000).

use std::path::Path;
use std::process::Command;

fn main() {
    gpu_db_static();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = Path::new(&dir).join(".git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(r) = head.trim().strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=.git/{r}");
        }
    }
    println!("cargo:rerun-if-env-changed=EXLIAR_GIT_COMMIT");
    let commit = std::env::var("EXLIAR_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let o = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(&dir)
                .output()
                .ok()?;
            let c = String::from_utf8(o.stdout).ok()?.trim().to_string();
            (o.status.success() && !c.is_empty()).then_some(c)
        })
        .unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=EXLIAR_BUILD=commit {commit}, {target}, {profile}");
}

/// `data/gpu-db.toml` → `OUT_DIR/gpu-db.rs`: `static EMBEDDED: GpuDb`, each
/// list a static array of its own. The fields and their defaults are those
/// of the types in `src/analyze/db.rs` (a test compares the static with the
/// file parsed by serde). A TOML error, a missing field or a value of the
/// wrong kind fails the build, naming the file.
fn gpu_db_static() {
    println!("cargo:rerun-if-changed=data/gpu-db.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let src = Path::new(&dir).join("data/gpu-db.toml");
    let shown = src.display().to_string();
    let text = match std::fs::read_to_string(&src) {
        Ok(t) => t,
        Err(e) => fail(&format!("{shown}: {e}")),
    };
    let value: toml::Table = match toml::from_str(&text) {
        Ok(v) => v,
        Err(e) => fail(&format!("{shown}: {e}")),
    };
    let mut g = Gen {
        file: shown,
        out: String::new(),
        n: 0,
    };
    let bmc = g.id_sets(&value, "bmc");
    let integrated = g.id_sets(&value, "integrated");
    let quirks = g.quirks(&value);
    g.out.push_str(&format!(
        "static EMBEDDED: GpuDb = GpuDb {{ bmc: {bmc}, integrated: {integrated}, quirks: {quirks} }};\n"
    ));
    let out = Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("gpu-db.rs");
    if let Err(e) = std::fs::write(&out, &g.out) {
        fail(&format!("{}: {e}", out.display()));
    }
}

/// Writes the statics; each list becomes `static L<n>: [T; len]`.
struct Gen {
    file: String,
    out: String,
    n: usize,
}

impl Gen {
    /// A list as `Cow::Borrowed(&L<n>)`, its items already Rust expressions.
    fn list(&mut self, ty: &str, items: Vec<String>) -> String {
        self.n += 1;
        let name = format!("L{}", self.n);
        self.out.push_str(&format!(
            "static {name}: [{ty}; {}] = [{}];\n",
            items.len(),
            items.join(", ")
        ));
        format!("Cow::Borrowed(&{name})")
    }

    fn tables<'a>(&self, v: &'a toml::Table, key: &str) -> Vec<&'a toml::Table> {
        match v.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|t| match t {
                    toml::Value::Table(t) => t,
                    _ => fail(&format!("{}: [[{key}]]: not a table", self.file)),
                })
                .collect(),
            Some(_) => fail(&format!("{}: {key}: not an array of tables", self.file)),
        }
    }

    /// A string field; `default` when absent and optional.
    fn text(&self, t: &toml::Table, what: &str, key: &str, default: Option<&str>) -> String {
        match (t.get(key), default) {
            (Some(toml::Value::String(s)), _) => format!("Cow::Borrowed({s:?})"),
            (None, Some(d)) => format!("Cow::Borrowed({d:?})"),
            (None, None) => fail(&format!("{}: {what}: no {key}", self.file)),
            (Some(_), _) => fail(&format!("{}: {what}: {key} is not a string", self.file)),
        }
    }

    /// A list of strings, empty when absent.
    fn texts(&mut self, t: &toml::Table, what: &str, key: &str) -> String {
        let items = match t.get(key) {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    toml::Value::String(s) => format!("Cow::Borrowed({s:?})"),
                    _ => fail(&format!("{}: {what}: {key}: not a string", self.file)),
                })
                .collect(),
            Some(_) => fail(&format!("{}: {what}: {key} is not an array", self.file)),
        };
        self.list("Text", items)
    }

    fn id_sets(&mut self, v: &toml::Table, key: &str) -> String {
        let mut items = Vec::new();
        for (i, t) in self.tables(v, key).into_iter().enumerate() {
            let what = format!("[[{key}]] #{}", i + 1);
            let devices = self.texts(t, &what, "devices");
            items.push(format!(
                "IdSet {{ vendor: {}, devices: {devices}, name: {}, source: {} }}",
                self.text(t, &what, "vendor", None),
                self.text(t, &what, "name", None),
                self.text(t, &what, "source", None),
            ));
        }
        self.list("IdSet", items)
    }

    fn quirks(&mut self, v: &toml::Table) -> String {
        let mut items = Vec::new();
        for (i, t) in self.tables(v, "quirk").into_iter().enumerate() {
            let what = format!("[[quirk]] #{}", i + 1);
            let matcher = match t.get("match").and_then(|m| m.as_str()) {
                Some("ids") => "QuirkMatch::Ids",
                Some("card-classes") => "QuirkMatch::CardClasses",
                Some("boot-display") => "QuirkMatch::BootDisplay",
                other => fail(&format!(
                    "{}: {what}: match {other:?}: not ids, card-classes or boot-display",
                    self.file
                )),
            };
            let devices = self.texts(t, &what, "devices");
            let classes = self.texts(t, &what, "classes");
            items.push(format!(
                "Quirk {{ id: {}, matcher: {matcher}, vendor: {}, devices: {devices}, \
                 classes: {classes}, title: {}, advice: {}, needs: {}, source: {} }}",
                self.text(t, &what, "id", None),
                self.text(t, &what, "vendor", None),
                self.text(t, &what, "title", None),
                self.text(t, &what, "advice", None),
                self.text(t, &what, "needs", Some("")),
                self.text(t, &what, "source", None),
            ));
        }
        self.list("Quirk", items)
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
