//! ARM template schema validation
