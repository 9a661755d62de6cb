//! `c-component bindings WIT_DIR WORLD OUT_DIR`: write the C bindings
//! (`<world>.c`, `<world>.h`, `<world>_component_type.o`).
//!
//! `c-component new CORE.wasm OUT.wasm`: make a component of a core module
//! linked with those bindings, adapting WASI preview1 to preview2.

use anyhow::{Context, Result, bail};
use std::path::Path;

fn bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = wit_bindgen_core::wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("reading {}", wit.display()))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out)?;
    for (name, bytes) in files.iter() {
        std::fs::write(out.join(name), bytes).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

fn new(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match a.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bindings", wit, world, out] => bindings(Path::new(wit), world, Path::new(out)),
        ["new", core, out] => new(Path::new(core), Path::new(out)),
        _ => bail!("usage: c-component bindings WIT_DIR WORLD OUT_DIR | new CORE.wasm OUT.wasm"),
    }
}
