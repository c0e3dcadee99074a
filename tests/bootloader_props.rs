//! Property tests of the kernel command-line tokenizer and editors:
//! tokenizing what was joined gives the parts back; every editor is
//! idempotent (re-adding changes nothing) and `remove(edit(x)) == x`; no
//! editor panics on arbitrary text.

use exliar::plan::boot::{bls, grub, limine, params, refind};
use proptest::prelude::*;

/// A kernel parameter: `key`, `key=value`, or `key="quoted value"`, with
/// characters that need escaping in shell double quotes.
fn param() -> impl Strategy<Value = String> {
    let key = "[a-z][a-z0-9_.-]{0,7}";
    prop_oneof![
        key.prop_map(|k| k.to_string()),
        (key, "[a-zA-Z0-9:,./@$\\\\`-]{0,8}").prop_map(|(k, v)| format!("{k}={v}")),
        (key, "[a-z $]{0,6}").prop_map(|(k, v)| format!("{k}=\"{v}\"")),
    ]
}

fn params_vec(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(param(), 0..max)
}

fn blanks() -> impl Strategy<Value = String> {
    "[ \t]{1,3}"
}

/// Join parameters with random blanks.
fn joined(ps: &[String], seps: &[String]) -> String {
    let mut s = String::new();
    for (i, p) in ps.iter().enumerate() {
        if i > 0 {
            s.push_str(seps.get(i % seps.len().max(1)).map_or(" ", |x| x.as_str()));
        }
        s.push_str(p);
    }
    s
}

type EditFn<'a> = dyn Fn(
        &str,
        &[String],
        &[String],
    ) -> Result<exliar::plan::boot::Edited, exliar::plan::boot::EditError>
    + 'a;

/// The three laws; `present` must hold each added parameter afterwards.
fn check_laws(x: &str, add: &[String], edit: &EditFn<'_>) -> Result<(), TestCaseError> {
    let e = match edit(x, add, &[]) {
        Ok(e) => e,
        Err(err) => return Err(TestCaseError::fail(format!("edit failed: {err}\n{x}"))),
    };
    let again = edit(&e.text, add, &[]).map_err(|er| TestCaseError::fail(er.to_string()))?;
    prop_assert_eq!(&again.text, &e.text, "re-edit changed the text");
    prop_assert!(again.added.is_empty());
    let back = edit(&e.text, &[], &e.added).map_err(|er| TestCaseError::fail(er.to_string()))?;
    prop_assert_eq!(&back.text, x, "remove(edit(x)) != x; edited:\n{}", e.text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn tokenize_gives_the_parts_back(ps in params_vec(8), seps in prop::collection::vec("[ \t\n]{1,3}", 1..4), lead in "[ \t\n]{0,2}", trail in "[ \t\n]{0,2}") {
        let line = format!("{lead}{}{trail}", joined(&ps, &seps));
        let got = params::split(&line).map_err(|e| TestCaseError::fail(e.message))?;
        prop_assert_eq!(got, ps);
    }

    #[test]
    fn tokenize_never_panics(s in "\\PC{0,64}") {
        if let Ok(spans) = params::tokenize(&s) {
            let mut last = 0;
            for sp in spans {
                prop_assert!(sp.start >= last && sp.end > sp.start && sp.end <= s.len());
                last = sp.end;
            }
        }
    }

    #[test]
    fn kernel_cmdline_laws(base in params_vec(6), add in params_vec(5), seps in prop::collection::vec(blanks(), 1..3), nl in any::<bool>()) {
        let x = format!("{}{}", joined(&base, &seps), if nl { "\n" } else { "" });
        check_laws(&x, &add, &bls::edit_kernel_cmdline)?;
    }

    #[test]
    fn loader_entry_laws(l1 in params_vec(5), l2 in params_vec(3), two in any::<bool>(), sep in "[ \t]{1,4}", add in params_vec(5)) {
        let mut x = format!("title T\nlinux{sep}/vmlinuz\ninitrd{sep}/initrd.img\n");
        if !l1.is_empty() {
            x.push_str(&format!("options{sep}{}\n", l1.join(" ")));
        }
        if two && !l2.is_empty() {
            x.push_str(&format!("# between\noptions{sep}{}\n", l2.join(" ")));
        }
        x.push_str("# trailing comment\n");
        check_laws(&x, &add, &|t, a, r| bls::edit_loader_entry("e.conf", t, a, r).map(|e| e.edited))?;
    }

    #[test]
    fn grub_laws(base in params_vec(5), other in params_vec(3), quote in 0..4u8, add in params_vec(5)) {
        // No `'` in the parameters: single quotes cannot hold them in place.
        let v = base.join(" ");
        let line = match quote {
            0 => format!("GRUB_CMDLINE_LINUX_DEFAULT=\"{}\"\n", v.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`")),
            1 => format!("GRUB_CMDLINE_LINUX_DEFAULT='{v}'\n"),
            2 => String::new(),
            _ => "GRUB_CMDLINE_LINUX_DEFAULT=quiet\n".to_string(),
        };
        let x = format!("# c\nGRUB_TIMEOUT=5\n{line}GRUB_CMDLINE_LINUX=\"{}\"\n", other.join(" ").replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`"));
        check_laws(&x, &add, &|t, a, r| grub::edit_default_grub(t, grub::GrubKey::LinuxDefault, a, r))?;
    }

    #[test]
    fn refind_laws(lines in prop::collection::vec(params_vec(4), 1..4), add in params_vec(4)) {
        let mut x = String::new();
        for (i, l) in lines.iter().enumerate() {
            x.push_str(&format!("\"Entry {i}\"  \"{}\"\n", l.join(" ").replace('"', "\"\"")));
        }
        check_laws(&x, &add, &refind::edit_refind_linux_conf)?;
    }

    #[test]
    fn limine_laws(c1 in params_vec(4), has_cmdline in any::<bool>(), add in params_vec(4)) {
        let mut x = String::from("timeout: 3\n\n/Linux\n    protocol: linux\n    path: boot():/vmlinuz\n");
        if has_cmdline {
            x.push_str(&format!("    cmdline: {}\n", c1.join(" ")));
        }
        x.push_str("    module_path: boot():/initramfs.img\n\n/Other\n    protocol: efi_chainload\n");
        check_laws(&x, &add, &limine::edit_limine_conf)?;
    }

    #[test]
    fn default_limine_laws(c1 in params_vec(4), has in any::<bool>(), add in params_vec(4)) {
        let mut x = String::from("ESP_PATH=\"/boot\"\n");
        if has {
            x.push_str(&format!("KERNEL_CMDLINE[default]+=\"{}\"\n", c1.join(" ").replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`")));
        }
        check_laws(&x, &add, &limine::edit_default_limine)?;
    }

    #[test]
    fn editors_never_panic(s in "(\\PC|\n|\"|'|\\\\|\\$|`|#|=|:|/){0,120}") {
        let a = vec!["iommu=pt".to_string()];
        let _ = bls::edit_kernel_cmdline(&s, &a, &a);
        let _ = bls::edit_loader_entry("x.conf", &s, &a, &a);
        let _ = grub::edit_default_grub(&s, grub::GrubKey::LinuxDefault, &a, &a);
        let _ = refind::edit_refind_linux_conf(&s, &a, &a);
        let _ = limine::edit_limine_conf(&s, &a, &a);
        let _ = limine::edit_default_limine(&s, &a, &a);
        let _ = exliar::plan::boot::kernelstub::read_config(&s);
    }
}
