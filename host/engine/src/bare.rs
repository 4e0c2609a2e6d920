//! Bare core modules: no WASI, no component, just exported functions of numbers (the modules
//! of tutorials and benchmarks: `sum(a, b)`, `answer() -> 42`, a loop). A request names the
//! function and gives integer (or float) arguments; the results are the response, one per line.
//!
//! The only imports a bare module may have are the `platform` set, documented in
//! `docs/GUESTS.md`: `platform.now() -> f64`, milliseconds since the UNIX epoch, as
//! JavaScript's `Date.now()` gives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::{ExternType, InstancePre, Linker, Module, Val, ValType};

use crate::budget::{classify, finish, new_store, start_clock};
use crate::host::HostState;
use crate::instance::{InputPath, Invocation};
use crate::kind::{PLATFORM_FUNCTIONS, PLATFORM_MODULE};
use crate::{Engine, Error, Fault, Limits, Response};

/// A linked bare module, ready to instantiate.
#[derive(Clone)]
pub struct BareHandler {
    pre: InstancePre<HostState>,
    /// Exported functions, in the module's order.
    functions: Vec<String>,
}

impl std::fmt::Debug for BareHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BareHandler")
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

/// The `platform` imports.
pub(crate) fn add_platform_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    debug_assert_eq!(PLATFORM_FUNCTIONS, ["now"]);
    linker.func_wrap(PLATFORM_MODULE, "now", || -> f64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    })?;
    Ok(())
}

impl BareHandler {
    pub(crate) fn new(engine: &Engine, module: &Module) -> Result<Self, Error> {
        let pre = engine
            .bare_linker()
            .instantiate_pre(module)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        let functions = module
            .exports()
            .filter(|e| matches!(e.ty(), ExternType::Func(_)))
            .map(|e| e.name().to_owned())
            .collect();
        Ok(Self { pre, functions })
    }

    /// The exported functions.
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// Which function a request runs: the one named, else the only exported function, else
    /// `_start`.
    pub fn pick(&self, name: Option<&str>) -> Result<&str, Error> {
        let exported = || {
            self.functions
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name.filter(|n| !n.is_empty()) {
            Some(name) => self
                .functions
                .iter()
                .find(|f| *f == name)
                .map(String::as_str)
                .ok_or_else(|| {
                    Error::BadCall(format!(
                        "the module exports no function `{name}` (it exports {})",
                        exported()
                    ))
                }),
            None if self.functions.len() == 1 => Ok(&self.functions[0]),
            None if self.functions.iter().any(|f| f == "_start") => Ok("_start"),
            None => Err(Error::BadCall(format!(
                "name the function to call: the module exports {}",
                exported()
            ))),
        }
    }

    /// Call `function` with `args` on a fresh instance. Arguments are parsed by the function's
    /// parameter types; a wrong count or a value that does not parse is an [`Error::BadCall`]
    /// (the caller's mistake, before anything runs).
    pub fn call(
        &self,
        limits: Arc<Limits>,
        function: &str,
        args: &[&str],
    ) -> Result<Invocation, Error> {
        let mut store = new_store(
            self.pre.module().engine(),
            HostState::new(limits, Arc::new(BTreeMap::new())),
        );
        let func_ty = match self.pre.module().get_export(function) {
            Some(ExternType::Func(ty)) => ty,
            _ => {
                return Err(Error::BadCall(format!(
                    "the module exports no function `{function}`"
                )));
            }
        };
        let params: Vec<ValType> = func_ty.params().collect();
        if params.len() != args.len() {
            return Err(Error::BadCall(format!(
                "`{function}` takes {} argument(s), {} given",
                params.len(),
                args.len()
            )));
        }
        let params = params
            .iter()
            .zip(args)
            .enumerate()
            .map(|(i, (ty, arg))| parse_arg(ty, arg, i + 1, function))
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = vec![Val::I32(0); func_ty.results().len()];
        start_clock(&mut store);
        let result = match self.pre.instantiate(&mut store) {
            Err(e) => Err(classify(&mut store, e)),
            Ok(instance) => match instance.get_func(&mut store, function) {
                None => Err(Fault::Host {
                    message: format!("`{function}` vanished from the instance"),
                }),
                Some(func) => match func.call(&mut store, &params, &mut results) {
                    Ok(()) => Ok(text_response(&results)),
                    Err(e) => Err(classify(&mut store, e)),
                },
            },
        };
        Ok(finish(&mut store, result, InputPath::Portable, 0, 0))
    }
}

fn parse_arg(ty: &ValType, arg: &str, position: usize, function: &str) -> Result<Val, Error> {
    let bad = |what: &str| {
        Error::BadCall(format!(
            "argument {position} of `{function}` must be {what}, not {arg:?}"
        ))
    };
    let arg = arg.trim();
    Ok(match ty {
        ValType::I32 => Val::I32(
            arg.parse::<i32>()
                .or_else(|_| arg.parse::<u32>().map(|u| u as i32))
                .map_err(|_| bad("a 32-bit integer"))?,
        ),
        ValType::I64 => Val::I64(
            arg.parse::<i64>()
                .or_else(|_| arg.parse::<u64>().map(|u| u as i64))
                .map_err(|_| bad("a 64-bit integer"))?,
        ),
        ValType::F32 => Val::F32(arg.parse::<f32>().map_err(|_| bad("a number"))?.to_bits()),
        ValType::F64 => Val::F64(arg.parse::<f64>().map_err(|_| bad("a number"))?.to_bits()),
        _ => {
            return Err(Error::BadCall(format!(
                "argument {position} of `{function}` has type {ty}, which cannot be given as text"
            )));
        }
    })
}

/// The results, one per line (`7\n`); no results, an empty body.
fn text_response(results: &[Val]) -> Response {
    let mut body = String::new();
    for value in results {
        let text = match value {
            Val::I32(v) => v.to_string(),
            Val::I64(v) => v.to_string(),
            Val::F32(bits) => f32::from_bits(*bits).to_string(),
            Val::F64(bits) => f64::from_bits(*bits).to_string(),
            other => format!("{other:?}"),
        };
        body.push_str(&text);
        body.push('\n');
    }
    Response {
        status: 200,
        headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())],
        body: body.into_bytes(),
    }
}
