//! The scalar types the kernels run on.

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `f32` or `f64`: the element types of the factored kernels. (Eigen-decompositions always run
/// in `f64`; a basis keeps an `f32` copy of its factors for the `f32` kernels.)
pub trait Float:
    faer::traits::RealField + Copy + Send + Sync + Default + std::fmt::Debug + 'static + sealed::Sealed
{
    /// Rounds an `f64`.
    fn from_f64(x: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
}

impl Float for f32 {
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}
