//! SwiftPass gateway.
