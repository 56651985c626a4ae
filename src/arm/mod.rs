//! arm
