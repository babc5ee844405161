//! Threads per worker (`Builder::threads_per_worker`): the environment a worker
//! process starts with, so the thread pools its tasks use — rayon's, OpenMP's, a
//! BLAS library's — share the CPUs with the other workers instead of each
//! starting one thread per CPU.

use crate::config::Config;
use std::ffi::OsString;
use std::process::Command;

/// The variables set, and who reads them: rayon, OpenMP, OpenBLAS, Intel MKL,
/// BLIS, Apple's Accelerate, Polars. Each library reads its own once, when its
/// pool starts: in a worker, after this environment is in place.
pub(crate) const THREAD_VARS: [&str; 7] = [
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "POLARS_MAX_THREADS",
];

/// How many threads each worker's pools get, and whether the program said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadLimit {
    count: usize,
    /// Given with `threads_per_worker`: set whatever the environment says.
    /// Otherwise the default, which a variable already set overrides.
    explicit: bool,
}

impl ThreadLimit {
    /// A pool's: as its options say, else `cpu_count() / workers`, at least 1.
    pub(crate) fn for_pool(config: &Config) -> ThreadLimit {
        match config.threads_per_worker {
            Some(count) => ThreadLimit {
                count,
                explicit: true,
            },
            None => ThreadLimit {
                count: (crate::cpu_count() / config.workers.max(1)).max(1),
                explicit: false,
            },
        }
    }

    /// Sets the variables in a worker's command, leaving those this process has
    /// set (to something) to be inherited unless the limit is explicit.
    pub(crate) fn apply(self, cmd: &mut Command) {
        for (name, value) in self.settings(|name| std::env::var_os(name)) {
            cmd.env(name, value);
        }
    }

    /// The variables to set, given what this process's environment holds.
    fn settings(self, inherited: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, String)> {
        THREAD_VARS
            .into_iter()
            .filter(|name| self.explicit || inherited(name).is_none_or(|v| v.is_empty()))
            .map(|name| (name, self.count.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(workers: usize, threads_per_worker: Option<usize>) -> Config {
        let mut builder = crate::Builder::default().workers(workers);
        if let Some(n) = threads_per_worker {
            builder = builder.threads_per_worker(n);
        }
        builder.settle().expect("valid options")
    }

    #[test]
    fn the_default_shares_the_cpus_among_the_workers() {
        let cpus = crate::cpu_count();
        let limit = ThreadLimit::for_pool(&config(2, None));
        assert_eq!(limit.count, (cpus / 2).max(1));
        assert!(!limit.explicit);
        // More workers than CPUs: one thread each, never zero.
        assert_eq!(ThreadLimit::for_pool(&config(cpus + 1, None)).count, 1);
        assert_eq!(ThreadLimit::for_pool(&config(1, None)).count, cpus);
    }

    #[test]
    fn the_default_leaves_a_variable_the_environment_sets() {
        let limit = ThreadLimit {
            count: 2,
            explicit: false,
        };
        let set = limit.settings(|name| match name {
            "OMP_NUM_THREADS" => Some("8".into()),
            "MKL_NUM_THREADS" => Some("".into()), // empty: as good as unset
            _ => None,
        });
        let names: Vec<_> = set.iter().map(|(n, _)| *n).collect();
        assert!(!names.contains(&"OMP_NUM_THREADS"), "{set:?}");
        assert!(names.contains(&"MKL_NUM_THREADS"), "{set:?}");
        assert!(names.contains(&"RAYON_NUM_THREADS"), "{set:?}");
        assert_eq!(set.len(), THREAD_VARS.len() - 1);
        assert!(set.iter().all(|(_, v)| v == "2"), "{set:?}");
    }

    #[test]
    fn an_explicit_count_is_set_everywhere() {
        let limit = ThreadLimit::for_pool(&config(2, Some(3)));
        assert_eq!(
            limit,
            ThreadLimit {
                count: 3,
                explicit: true
            }
        );
        let set = limit.settings(|_| Some("8".into()));
        assert_eq!(set.len(), THREAD_VARS.len());
        assert!(set.iter().all(|(_, v)| v == "3"), "{set:?}");
    }

    #[test]
    fn zero_threads_is_refused() {
        let refused = crate::Builder::default().threads_per_worker(0).settle();
        assert!(
            matches!(&refused, Err(crate::Error::Config(m)) if m.contains("threads_per_worker")),
            "{refused:?}"
        );
    }
}
