//! Upload-time checks that turn a bad `.wasm` into precise errors before
//! anything runs or compiles: size, binary kind, imports, exports and the
//! memory it needs to start. They read the binary, so they take
//! milliseconds where compiling a large guest takes seconds.

use wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload, TypeBounds};

use super::{Limits, PluginError};

/// The hooks, in the order Hookgate documents them, each with the interface
/// that exports it under contract 0.2.0. Under 0.1.0 they are functions of
/// the component, named as the hooks, and all three are required.
pub(crate) const HOOKS: [(&str, &str); 3] = [
    ("transform", "hookgate:plugin/transform@0.2.0"),
    ("decide", "hookgate:plugin/decide@0.2.0"),
    ("judge", "hookgate:plugin/judge@0.2.0"),
];

/// Imports a plugin may have. The hookgate interfaces are matched exactly so
/// a plugin built against another contract version gets a clear error.
/// WASI is limited to version 0.2 and to interfaces that reach nothing
/// outside the sandbox: streams, stdio (captured), clocks, randomness, a
/// filesystem with no preopened directories, sockets that refuse every
/// address, and an HTTP client that denies every request.
const ALLOWED_EXACT: [&str; 4] = [
    "hookgate:plugin/host@0.2.0",
    "hookgate:plugin/types@0.2.0",
    "hookgate:plugin/host@0.1.0",
    "hookgate:plugin/types@0.1.0",
];
const ALLOWED_WASI: [&str; 8] = [
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/types@",
    "wasi:http/outgoing-handler@",
];

/// Whether a plugin may import the interface `name`.
fn allowed(name: &str) -> bool {
    if ALLOWED_EXACT.contains(&name) {
        return true;
    }
    let wasi_0_2 = name
        .split_once('@')
        .is_some_and(|(_, version)| version.starts_with("0.2."));
    wasi_0_2 && ALLOWED_WASI.iter().any(|prefix| name.starts_with(prefix))
}

/// Preamble of every WebAssembly binary.
const MAGIC: &[u8; 4] = b"\0asm";

/// What a component says about itself, read without compiling it.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    /// Its imports' names.
    pub(crate) imports: Vec<String>,
    /// Its top-level function exports' names.
    pub(crate) functions: Vec<String>,
    /// Its top-level instance exports' names.
    pub(crate) instances: Vec<String>,
    /// The largest initial linear memory of its core modules, in bytes.
    pub(crate) initial_memory: u64,
}

/// Whether an instance export `name` is the 0.2 `interface` of a hook:
/// any 0.2.x, as the linker's semver rules find it.
fn is_hook_interface(name: &str, interface: &str) -> bool {
    let Some((name, version)) = name.split_once('@') else {
        return false;
    };
    interface
        .split_once('@')
        .is_some_and(|(wanted, _)| wanted == name)
        && version.starts_with("0.2.")
}

impl Shape {
    /// The hooks the component exports: those whose 0.2 interface it
    /// exports or, when it exports none, those of 0.1.0 it exports as
    /// functions.
    pub(crate) fn hooks(&self) -> Vec<&'static str> {
        let interfaces: Vec<_> = HOOKS
            .into_iter()
            .filter(|(_, interface)| {
                self.instances
                    .iter()
                    .any(|e| is_hook_interface(e, interface))
            })
            .map(|(hook, _)| hook)
            .collect();
        if !interfaces.is_empty() {
            return interfaces;
        }
        HOOKS
            .into_iter()
            .filter(|(hook, _)| self.functions.iter().any(|e| e == hook))
            .map(|(hook, _)| hook)
            .collect()
    }
}

/// Every problem with the bytes, cheapest first: size, binary kind, then
/// imports, exports and the memory the plugin needs to start. Empty means
/// the component may be compiled; the shape comes with it when it could be
/// read.
pub(crate) fn problems(bytes: &[u8], limits: &Limits) -> (Vec<PluginError>, Option<Shape>) {
    let mut problems = Vec::new();
    if bytes.len() > limits.max_component_bytes {
        problems.push(PluginError::TooLarge {
            size: bytes.len(),
            limit: limits.max_component_bytes,
        });
    }
    if let Err(err) = check_header(bytes) {
        problems.push(err);
        return (problems, None);
    }
    let shape = match shape(bytes) {
        Ok(shape) => shape,
        Err(err) => {
            problems.push(err);
            return (problems, None);
        }
    };
    for import in shape.imports.iter().filter(|name| !allowed(name)) {
        problems.push(PluginError::ForbiddenImport {
            import: import.clone(),
        });
    }
    let hooks = shape.hooks();
    let v0_1 = !shape
        .instances
        .iter()
        .any(|e| HOOKS.iter().any(|(_, i)| is_hook_interface(e, i)));
    if hooks.is_empty() {
        problems.push(PluginError::NoHooks);
    } else if v0_1 {
        for (export, _) in HOOKS.into_iter().filter(|(hook, _)| !hooks.contains(hook)) {
            problems.push(PluginError::MissingExport { export });
        }
    }
    if shape.initial_memory > limits.memory_bytes as u64 {
        problems.push(PluginError::MemoryTooSmall {
            needed: shape.initial_memory,
            limit: limits.memory_bytes,
        });
    }
    (problems, Some(shape))
}

/// Checks the binary header: a component, not a core module.
fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let reason = if bytes.starts_with(b"(") {
            "this looks like WebAssembly text; upload the binary .wasm".to_string()
        } else {
            "it does not start with the \\0asm header".to_string()
        };
        return Err(PluginError::NotWasm { reason });
    }
    // Bytes 4..8 are the version and layer: layer 0 is a core module,
    // layer 1 a component.
    match bytes[6..8] {
        [0, 0] => Err(PluginError::NotAComponent),
        [1, 0] => Ok(()),
        _ => Err(PluginError::NotWasm {
            reason: format!("unknown WebAssembly layer {:?}", &bytes[4..8]),
        }),
    }
}

/// Reads the imports, function and instance exports, and memories of a
/// component.
fn shape(bytes: &[u8]) -> Result<Shape, PluginError> {
    let invalid = |e: wasmparser::BinaryReaderError| PluginError::Invalid {
        reason: e.to_string(),
    };
    let mut shape = Shape::default();
    // Nested modules and components come inline, each closed by an `End`;
    // only the outer component's imports and exports are the plugin's.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(invalid)?;
                    // `use types.{event}` in a world becomes an import of a
                    // type equal to one already imported: a name, not a need.
                    if !matches!(import.ty, ComponentTypeRef::Type(TypeBounds::Eq(_))) {
                        shape.imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    let name = export.name.name.to_string();
                    match export.kind {
                        ComponentExternalKind::Func => shape.functions.push(name),
                        ComponentExternalKind::Instance => shape.instances.push(name),
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(invalid)?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    shape.initial_memory = shape
                        .initial_memory
                        .max(memory.initial.saturating_mul(page));
                }
            }
            _ => {}
        }
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_component_bytes: usize) -> Limits {
        Limits {
            max_component_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn core_module_is_told_to_build_for_wasip2() {
        let module = wat::parse_str("(module)").unwrap();
        let (problems, _) = problems(&module, &limits(1 << 20));
        assert_eq!(problems, [PluginError::NotAComponent]);
        assert!(problems[0].to_string().contains("--target wasm32-wasip2"));
    }

    #[test]
    fn oversized_upload_names_both_sizes() {
        let (problems, _) = problems(&[0; 100], &limits(10));
        assert_eq!(
            problems[0].to_string(),
            "plugin is 100 bytes, over the 10-byte component size limit"
        );
    }

    #[test]
    fn text_and_garbage_are_not_wasm() {
        let (text, _) = problems(b"(component)", &limits(1 << 20));
        assert!(text[0].to_string().contains("WebAssembly text"), "{text:?}");
        let (garbage, _) = problems(b"PK\x03\x04zipfile", &limits(1 << 20));
        assert!(
            garbage[0].to_string().contains("\\0asm header"),
            "{garbage:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_cheapest_first() {
        let component = wat::parse_str(
            r#"(component
                (import "acme:db/query@1.0.0" (instance))
                (import "wasi:io/streams@0.3.0" (instance))
                (core module (memory 1024))
            )"#,
        )
        .unwrap();
        let mut limits = limits(10);
        limits.memory_bytes = 32 << 20;
        let (problems, _) = problems(&component, &limits);
        let codes: Vec<_> = problems.iter().map(PluginError::code).collect();
        assert_eq!(
            codes,
            [
                "too_large",
                "forbidden_import",
                "forbidden_import",
                "missing_export",
                "memory_too_small"
            ]
        );
        assert_eq!(
            problems[4].to_string(),
            "plugin needs 67108864 bytes of memory to start, over its memory limit of \
             33554432 bytes (plugin.memory_mib)"
        );
    }

    #[test]
    fn wasi_0_2_is_allowed_but_not_other_versions_or_servers() {
        assert!(allowed("wasi:sockets/tcp@0.2.0"));
        assert!(allowed("wasi:http/outgoing-handler@0.2.3"));
        assert!(allowed("wasi:io/streams@0.2.6"));
        assert!(!allowed("wasi:io/streams@0.3.0"));
        assert!(!allowed("wasi:http/incoming-handler@0.2.0"));
        assert!(!allowed("wasi:keyvalue/store@0.2.0"));
        assert!(allowed("hookgate:plugin/host@0.2.0"));
        assert!(allowed("hookgate:plugin/types@0.1.0"));
        assert!(!allowed("hookgate:plugin/host@0.3.0"));
    }

    #[test]
    fn hooks_are_read_from_0_2_interfaces_or_else_0_1_functions() {
        let shape = |functions: &[&str], instances: &[&str]| Shape {
            functions: functions.iter().map(ToString::to_string).collect(),
            instances: instances.iter().map(ToString::to_string).collect(),
            ..Shape::default()
        };
        let v0_2 = shape(
            &[],
            &[
                "hookgate:plugin/decide@0.2.0",
                "hookgate:plugin/judge@0.2.3",
            ],
        );
        assert_eq!(v0_2.hooks(), ["decide", "judge"]);
        let v0_1 = shape(&["judge", "decide", "transform"], &[]);
        assert_eq!(v0_1.hooks(), ["transform", "decide", "judge"]);
        let other = shape(&["run"], &["hookgate:plugin/decide@0.1.0"]);
        assert!(other.hooks().is_empty());
    }

    #[test]
    fn a_0_1_plugin_missing_a_function_is_told_which() {
        let component = wat::parse_str(
            r#"(component
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (export "decide" (func $f))
                (export "judge" (func $f)))"#,
        )
        .unwrap();
        let (problems, _) = problems(&component, &limits(1 << 20));
        assert_eq!(
            problems,
            [PluginError::MissingExport {
                export: "transform"
            }]
        );
    }

    #[test]
    fn empty_component_header_passes_the_binary_check() {
        let component = wat::parse_str("(component)").unwrap();
        assert!(check_header(&component).is_ok());
    }
}
