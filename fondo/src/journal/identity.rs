//! What names a journaled map, so that a journal is never mixed with another run's
//! work: the executable's digest, the function's name and code offset, the types,
//! and a hash of each input's encoding.

use super::format::{FileHeader, MapHeader};
use crate::boundary::digest::{ExeDigest, hash64, hash64_of_words};
use crate::error::{Error, Payload, Result, SerdeStep};
use crate::task::Task;
use serde::Serialize;
use std::ops::Range;
use std::path::Path;

/// Refuses a map on record that is not this one: another function, other types,
/// other inputs.
pub(super) fn check_map(
    path: &Path,
    on_record: &MapHeader,
    now: &MapHeader,
    records: &[Option<(u64, Range<usize>)>],
    hashes: &[u64],
) -> Result<()> {
    let shown = path.display();
    let n = now.map;
    let refuse = |why: String| {
        Err(Error::Journal(format!(
            "journal {shown} was written {why}: results are never mixed. Delete the journal (or \
             give this run another path) to start over"
        )))
    };
    if on_record.function != now.function || on_record.code != now.code {
        let detail = if on_record.function == now.function {
            format!(
                "`{}`, another closure or instance of that name",
                now.function
            )
        } else {
            format!("`{}`; this run's is `{}`", on_record.function, now.function)
        };
        return refuse(format!("for another function at map {n} ({detail})"));
    }
    if on_record.args != now.args || on_record.result != now.result {
        return refuse(format!(
            "for other types at map {n} ({} -> {} on record, {} -> {} now)",
            on_record.args, on_record.result, now.args, now.result
        ));
    }
    if on_record.inputs != now.inputs {
        return refuse(format!(
            "for other inputs at map {n} ({} inputs on record, {} now)",
            on_record.inputs, now.inputs
        ));
    }
    if let Some(position) = (0..records.len())
        .find(|&p| matches!(&records[p], Some((h, _)) if Some(h) != hashes.get(p)))
    {
        return refuse(format!(
            "for other inputs at map {n} (position {position} differs)"
        ));
    }
    if on_record.inputs_hash != now.inputs_hash {
        return refuse(format!(
            "for other inputs at map {n} (they differ at positions with no result on record yet)"
        ));
    }
    Ok(())
}

/// Each input's hash, from its serde encoding.
pub(super) fn input_hashes<Args: Serialize>(items: &[Args]) -> Result<Vec<u64>> {
    let mut scratch = Vec::new();
    items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            scratch.clear();
            let encoded =
                crate::panic::catch(|| crate::boundary::item::encode_into(&mut scratch, item));
            let message = match encoded {
                Ok(Ok(())) => return Ok(hash64(&scratch)),
                Ok(Err(e)) => e.to_string(),
                Err(caught) => format!("panicked: {}", caught.message),
            };
            Err(Error::Serialization {
                what: Payload::Arguments,
                step: SerdeStep::Serialize,
                type_name: std::any::type_name::<Args>().to_owned(),
                message: format!("input at position {position}, hashed for the journal: {message}"),
            })
        })
        .collect()
}

/// The hash of a map's inputs: of their count and every input's hash.
pub(super) fn hash_of_hashes(hashes: &[u64]) -> u64 {
    hash64_of_words(hashes)
}

/// The running executable as a journal's file header names it: its digest (the same
/// bytes, wherever the file is, are the same program) and its path, for messages.
pub(super) fn this_executable() -> Result<FileHeader> {
    let exe = ExeDigest::current().map_err(|e| {
        Error::Journal(format!(
            "cannot read this executable (/proc/self/exe) to name it: {e}"
        ))
    })?;
    let exe_path = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "this executable".into());
    Ok(FileHeader { exe, exe_path })
}

/// The fixed point code offsets are measured from.
#[inline(never)]
pub(super) fn anchor() -> &'static str {
    "fondo::journal::anchor"
}

/// Calls a task: its monomorphised address names the task's code.
#[inline(never)]
pub(super) fn call_task<F: Task<Args>, Args>(f: &F, args: Args) -> F::Output {
    f.call(args)
}

/// Where `F`'s code lies in this executable, relative to a fixed point: the same in
/// every run of the same executable, different for two closures of the same name.
pub(super) fn code_of<F: Task<Args>, Args>() -> i64 {
    let call: fn(&F, Args) -> F::Output = call_task::<F, Args>;
    let anchor: fn() -> &'static str = anchor;
    (call as usize as i64).wrapping_sub(anchor as usize as i64)
}
