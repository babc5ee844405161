//! `Task`: a function applied to a tuple of arguments, spread over its parameters
//! the way Python's `starmap` and `apply` spread theirs.

/// A callable that takes its arguments as one tuple, like Python's `f(*args)`.
///
/// Implemented for every `Fn(A1, …, An) -> R` with `n` from 0 to 8, so
/// `pool.apply(pow, (2, 10))` calls `pow(2, 10)`. `map` wraps each item in a
/// 1-tuple, so the same machinery serves all the pool's methods.
pub trait Task<Args>: Send + Sync + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the tuple spread over its parameters.
    fn call(&self, args: Args) -> Self::Output;
}

macro_rules! spread {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg),*> Task<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Send + Sync + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case, clippy::unused_unit)]
            #[inline]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }
        }
    };
}

spread!();
spread!(A1);
spread!(A1, A2);
spread!(A1, A2, A3);
spread!(A1, A2, A3, A4);
spread!(A1, A2, A3, A4, A5);
spread!(A1, A2, A3, A4, A5, A6);
spread!(A1, A2, A3, A4, A5, A6, A7);
spread!(A1, A2, A3, A4, A5, A6, A7, A8);

/// A task that can run in another process: [`Task`] and `Copy` — a `fn` item or a
/// closure that captures nothing (fondo also checks, when it compiles the task's
/// entry point, that it is zero-sized: no fn pointer, no captured `Copy` value).
///
/// Implemented for every such type; the bound is here so that the compiler's
/// message says what to do.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run in a worker process: it captures a value",
    label = "a process task must be a `fn` item or a closure that captures nothing",
    note = "pass what it needs as an argument, or once per worker as a context: \
            `pool.map_with(&fondo::Shared::new(value)?, |value, x| ..., items)`"
)]
pub trait ProcessTask<Args>: Task<Args> + Copy {}

impl<F: Task<Args> + Copy, Args> ProcessTask<Args> for F {}

/// Checks, when a process task's code is compiled, that it is zero-sized: the
/// worker makes its own value of the task's type out of nothing.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "fondo: this process task is not a `fn` item or a closure that captures nothing. \
         A closure that captures a value cannot run in a worker process (its type names \
         the line): pass the value as an argument, or once per worker with \
         `Pool::map_with` and a `fondo::Shared`. A `fn` pointer is an address, not a \
         function: pass the `fn` item itself (`square`, not `square as fn(u64) -> u64`)."
    );
}
