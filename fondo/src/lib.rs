//! fondo
