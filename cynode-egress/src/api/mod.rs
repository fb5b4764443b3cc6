//! API egress service (in progress).
