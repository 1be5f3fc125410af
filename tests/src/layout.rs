//! The workspace's structure as data, for the layout test: the module tree of a crate read from
//! its sources, which modules import which, and the cycles among them.
//!
//! A module imports another when its code names a path into it: `use crate::a::b::X`,
//! `super::x::f()`, `self::y`, or a child module's name (`listener::build()`). A path counts
//! towards the deepest module it reaches. Test-only modules (`#[cfg(test)] mod …`) are left
//! out: tests may look anywhere. Comments, strings and character literals are blanked before
//! reading, so a path in a doc comment or an error message is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate (`["xds", "listener"]`; the crate root is empty).
pub type ModulePath = Vec<String>;

/// The modules of one crate target and what each imports.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    pub files: BTreeMap<ModulePath, PathBuf>,
    pub imports: BTreeMap<ModulePath, BTreeSet<ModulePath>>,
}

/// `a::b`, or `crate` for the root.
pub fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// Source text with comments, string literals and character literals replaced by spaces (line
/// breaks kept), so that only code is left to read.
pub fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut index = 0;
    let blank = |out: &mut String, text: &[char]| {
        for &c in text {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    while index < chars.len() {
        let rest = &chars[index..];
        let starts = |prefix: &str| prefix.chars().zip(rest).filter(|(a, b)| a == *b).count() == prefix.len();
        if starts("//") {
            let end = rest.iter().position(|&c| c == '\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            index += end;
        } else if starts("/*") {
            let mut depth = 0;
            let mut end = 0;
            while end < rest.len() {
                if rest[end] == '/' && rest.get(end + 1) == Some(&'*') {
                    depth += 1;
                    end += 2;
                } else if rest[end] == '*' && rest.get(end + 1) == Some(&'/') {
                    depth -= 1;
                    end += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    end += 1;
                }
            }
            blank(&mut out, &rest[..end.min(rest.len())]);
            index += end;
        } else if let Some(length) = raw_string_length(rest) {
            blank(&mut out, &rest[..length]);
            index += length;
        } else if rest[0] == '"' || (rest[0] == 'b' && rest.get(1) == Some(&'"')) {
            let open = if rest[0] == 'b' { 2 } else { 1 };
            let mut end = open;
            while end < rest.len() && rest[end] != '"' {
                end += if rest[end] == '\\' { 2 } else { 1 };
            }
            let length = (end + 1).min(rest.len());
            blank(&mut out, &rest[..length]);
            index += length;
        } else if rest[0] == '\'' {
            // A character literal ('x', '\n', '\u{b5}') — not a lifetime ('a).
            let length = match rest.get(1) {
                Some('\\') => rest.iter().skip(2).position(|&c| c == '\'').map(|position| position + 3),
                Some(_) if rest.get(2) == Some(&'\'') => Some(3),
                _ => None,
            };
            match length {
                Some(length) => {
                    blank(&mut out, &rest[..length]);
                    index += length;
                }
                None => {
                    out.push('\'');
                    index += 1;
                }
            }
        } else {
            out.push(rest[0]);
            index += 1;
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) at the start of `text`.
fn raw_string_length(text: &[char]) -> Option<usize> {
    let mut index = usize::from(text.first() == Some(&'b'));
    if text.get(index) != Some(&'r') {
        return None;
    }
    index += 1;
    let hashes = text[index..].iter().take_while(|&&c| c == '#').count();
    index += hashes;
    if text.get(index) != Some(&'"') {
        return None;
    }
    index += 1;
    while index < text.len() {
        if text[index] == '"' && text[index + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
            return Some(index + 1 + hashes);
        }
        index += 1;
    }
    Some(text.len())
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A `mod NAME` declaration or inline module found in code.
struct ModuleItem {
    name: String,
    test_only: bool,
    /// Byte range of the whole item: its attributes and visibility, through `;` or the closing
    /// brace (so blanking a test-only item blanks its `#[cfg(test)]` too).
    span: (usize, usize),
    inline: bool,
}

/// The `mod` items of code (already blanked of comments and strings), outermost only.
fn module_items(code: &str) -> Vec<ModuleItem> {
    let bytes = code.as_bytes();
    let mut items = Vec::new();
    let mut search = 0;
    while let Some(found) = code[search..].find("mod ") {
        let start = search + found;
        search = start + 4;
        let before_ok = start == 0 || !is_ident_char(bytes[start - 1] as char);
        if !before_ok {
            continue;
        }
        let name: String = code[start + 4..].trim_start().chars().take_while(|&c| is_ident_char(c)).collect();
        if name.is_empty() {
            continue;
        }
        let after_name = start + 4 + code[start + 4..].find(&name).unwrap_or(0) + name.len();
        let next = code[after_name..].trim_start();
        let inline = next.starts_with('{');
        if !inline && !next.starts_with(';') {
            continue;
        }
        let end = if inline {
            let open = after_name + code[after_name..].find('{').unwrap_or(0);
            let mut depth = 0;
            let mut close = open;
            for (offset, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = open + offset;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            close + 1
        } else {
            after_name + code[after_name..].find(';').unwrap_or(0) + 1
        };
        // The attributes just before the item (and its visibility) decide whether it is test-only.
        let line_start = code[..start].rfind(['}', ';']).map_or(0, |position| position + 1);
        let test_only = code[line_start..start].contains("#[cfg(test)]");
        items.push(ModuleItem { name, test_only, span: (line_start, end), inline });
        search = end;
    }
    items
}

/// Removes the text of test-only modules.
fn without_test_modules(code: &str) -> String {
    let mut kept = code.to_string();
    for item in module_items(code).iter().rev().filter(|item| item.test_only) {
        let blanks: String =
            code[item.span.0..item.span.1].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
        kept.replace_range(item.span.0..item.span.1, &blanks);
    }
    kept
}

/// Every path named in `use` trees of `code`, expanded (`use a::{b, c::d}` → `a::b`, `a::c::d`).
fn use_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut search = 0;
    while let Some(found) = code[search..].find("use ") {
        let start = search + found;
        search = start + 4;
        if start > 0 && is_ident_char(code.as_bytes()[start - 1] as char) {
            continue;
        }
        let Some(end) = code[start..].find(';') else { break };
        expand_use_tree(&[], code[start + 4..start + end].trim(), &mut paths);
        search = start + end;
    }
    paths
}

fn expand_use_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(inner) = tree.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
        let mut depth = 0;
        let mut part_start = 0;
        for (index, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use_tree(prefix, &inner[part_start..index], out);
                    part_start = index + 1;
                }
                _ => {}
            }
        }
        expand_use_tree(prefix, &inner[part_start..], out);
        return;
    }
    if let Some(brace) = tree.find("::{") {
        let mut longer = prefix.to_vec();
        longer.extend(tree[..brace].split("::").map(|segment| segment.trim().to_string()));
        expand_use_tree(&longer, &tree[brace + 2..], out);
        return;
    }
    let path = tree.split(" as ").next().unwrap_or(tree);
    let mut full = prefix.to_vec();
    full.extend(path.split("::").map(|segment| segment.trim().to_string()).filter(|segment| !segment.is_empty()));
    out.push(full);
}

/// Paths in expressions and types that start with `crate`, `super`, `self` or one of `children`.
fn code_paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        let at_start = index == 0 || !(is_ident_char(chars[index - 1]) || chars[index - 1] == ':');
        if !at_start || !is_ident_char(chars[index]) {
            index += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut cursor = index;
        loop {
            let word: String = chars[cursor..].iter().take_while(|&&c| is_ident_char(c)).collect();
            if word.is_empty() {
                break;
            }
            cursor += word.chars().count();
            segments.push(word);
            if chars.get(cursor) == Some(&':') && chars.get(cursor + 1) == Some(&':') {
                cursor += 2;
            } else {
                break;
            }
        }
        let first = segments.first().map(String::as_str).unwrap_or_default();
        let qualified = segments.len() > 1;
        if qualified && (matches!(first, "crate" | "super" | "self") || children.contains(first)) {
            paths.push(segments);
        }
        index = cursor.max(index + 1);
    }
    paths
}

impl ModuleGraph {
    /// Reads the module tree under a crate root file (`src/lib.rs`, `src/main.rs`).
    pub fn read(root_file: &Path) -> std::io::Result<ModuleGraph> {
        let mut graph = ModuleGraph::default();
        let mut codes = BTreeMap::new();
        let mut pending = vec![(Vec::new(), root_file.to_path_buf())];
        while let Some((module, file)) = pending.pop() {
            let code = without_test_modules(&code_only(&std::fs::read_to_string(&file)?));
            let directory = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let owns_directory =
                matches!(file.file_name().and_then(|name| name.to_str()), Some("lib.rs" | "main.rs" | "mod.rs"));
            let children_dir = if owns_directory {
                directory
            } else {
                directory.join(file.file_stem().map(PathBuf::from).unwrap_or_default())
            };
            for item in module_items(&code).into_iter().filter(|item| !item.inline && !item.test_only) {
                let flat = children_dir.join(format!("{}.rs", item.name));
                let nested = children_dir.join(&item.name).join("mod.rs");
                let Some(child_file) = [flat, nested].into_iter().find(|candidate| candidate.exists()) else {
                    continue;
                };
                let mut child = module.clone();
                child.push(item.name);
                pending.push((child, child_file));
            }
            graph.files.insert(module.clone(), file);
            codes.insert(module, code);
        }
        for (module, code) in &codes {
            let children: BTreeSet<String> = graph
                .files
                .keys()
                .filter(|other| other.len() == module.len() + 1 && other.starts_with(module))
                .filter_map(|other| other.last().cloned())
                .collect();
            let mut imports = BTreeSet::new();
            for path in use_paths(code).into_iter().chain(code_paths(code, &children)) {
                if let Some(target) = graph.resolve(module, &children, &path) {
                    if target != *module {
                        imports.insert(target);
                    }
                }
            }
            graph.imports.insert(module.clone(), imports);
        }
        Ok(graph)
    }

    /// The deepest module of this crate `path` (named from `module`) reaches, if any.
    fn resolve(&self, module: &ModulePath, children: &BTreeSet<String>, path: &[String]) -> Option<ModulePath> {
        let (mut base, mut rest): (ModulePath, &[String]) = match path.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &path[1..]),
            Some("self") => (module.clone(), &path[1..]),
            Some("super") => (module.clone(), path),
            Some(first) if children.contains(first) => (module.clone(), path),
            _ => return None,
        };
        while rest.first().map(String::as_str) == Some("super") {
            base.pop();
            rest = &rest[1..];
        }
        for segment in rest {
            let mut deeper = base.clone();
            deeper.push(segment.clone());
            if !self.files.contains_key(&deeper) {
                break;
            }
            base = deeper;
        }
        Some(base)
    }

    /// Groups of modules that import each other, directly or round a loop (strongly connected
    /// components of more than one module), each sorted.
    pub fn cycles(&self) -> Vec<Vec<ModulePath>> {
        struct Search<'a> {
            graph: &'a ModuleGraph,
            index: BTreeMap<&'a ModulePath, usize>,
            low: BTreeMap<&'a ModulePath, usize>,
            stack: Vec<&'a ModulePath>,
            next: usize,
            found: Vec<Vec<ModulePath>>,
        }
        impl<'a> Search<'a> {
            fn visit(&mut self, module: &'a ModulePath) {
                self.index.insert(module, self.next);
                self.low.insert(module, self.next);
                self.next += 1;
                self.stack.push(module);
                for target in self.graph.imports.get(module).into_iter().flatten() {
                    if !self.index.contains_key(target) {
                        self.visit(target);
                        let low = self.low[module].min(self.low[target]);
                        self.low.insert(module, low);
                    } else if self.stack.contains(&target) {
                        let low = self.low[module].min(self.index[target]);
                        self.low.insert(module, low);
                    }
                }
                if self.low[module] == self.index[module] {
                    let mut component = Vec::new();
                    while let Some(member) = self.stack.pop() {
                        component.push(member.clone());
                        if member == module {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.found.push(component);
                    }
                }
            }
        }
        let mut search = Search {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            next: 0,
            found: Vec::new(),
        };
        for module in self.imports.keys() {
            if !search.index.contains_key(module) {
                search.visit(module);
            }
        }
        search.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
    }

    fn names(modules: &[ModulePath]) -> Vec<String> {
        modules.iter().map(|module| display(module)).collect()
    }

    #[test]
    fn blanks_comments_strings_and_chars_but_not_lifetimes() {
        let code = code_only(
            "let a = \"crate::x\"; // super::y\nlet b: &'a str = r#\"self::z\"#; let c = '{'; /* a /* b */ */ f()",
        );
        assert!(!code.contains("crate::") && !code.contains("super::") && !code.contains("self::"), "{code}");
        assert!(code.contains("&'a str") && code.contains("f()") && !code.contains('{'), "{code}");
        assert_eq!(code.lines().count(), 2);
    }

    #[test]
    fn expands_use_trees() {
        let mut paths = Vec::new();
        expand_use_tree(&[], "crate::{a::B, b::{c, d::E as F}, self}", &mut paths);
        let joined: Vec<String> = paths.iter().map(|path| path.join("::")).collect();
        assert_eq!(joined, ["crate::a::B", "crate::b::c", "crate::b::d::E", "crate::self"]);
    }

    #[test]
    fn finds_cycles_between_siblings_and_between_a_parent_and_its_child_but_not_in_tests() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            &[
                (
                    "src/lib.rs",
                    "pub mod a;\npub mod b;\npub mod c;\n#[cfg(test)]\npub(crate) mod testing;\npub mod d;\n",
                ),
                ("src/a.rs", "use crate::b::Thing;\n"),
                ("src/b.rs", "pub struct Thing;\nfn f() { super::a::g(); }\n"),
                ("src/c.rs", "pub mod inner;\npub struct Shared;\nfn f() { inner::g() }\n"),
                ("src/c/inner.rs", "use super::Shared;\npub fn g() {}\n"),
                (
                    "src/d.rs",
                    "// crate::a::x\nfn f() { let _ = \"crate::c\"; }\n#[cfg(test)]\nmod tests { use crate::a::*; }\n",
                ),
            ],
        );
        let graph = ModuleGraph::read(&dir.path().join("src/lib.rs")).expect("read");
        assert_eq!(names(&graph.files.keys().cloned().collect::<Vec<_>>()), ["crate", "a", "b", "c", "c::inner", "d"]);
        let cycles: Vec<Vec<String>> = graph.cycles().iter().map(|cycle| names(cycle)).collect();
        assert_eq!(cycles.len(), 2, "{cycles:?}");
        assert!(cycles.contains(&vec!["a".to_string(), "b".to_string()]), "{cycles:?}");
        assert!(cycles.contains(&vec!["c".to_string(), "c::inner".to_string()]), "{cycles:?}");
        assert!(graph.imports[&vec!["d".to_string()]].is_empty());
    }
}
