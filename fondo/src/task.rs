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
