//! Prompts: task templates and the model's own chat template.

pub mod chat_template;
pub mod task;
