//! Byte streams of both sides: one stream type for plain and TLS
//! connections, and the rustls configurations (ring provider).

pub mod stream;
pub mod tls;
