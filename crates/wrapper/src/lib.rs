//! pty-resize library.
