//! Task prompts: `prompts/<task>/<system>` and `<user>` (names from the task config's
//! `prompts` field) are minijinja templates over an [`Example`]'s `inputs` plus a few
//! task-level variables, rendered into the system + user messages every backend sees.
//!
//! Variables: every key of `Example.inputs` (`text`, `question`, `options`, …), and from the
//! task config `labels` (list), `options_letters` (list) and `no_answer` (string). An
//! undefined variable is an error naming the template, so a typo never renders as "".

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::config::TaskConfig;
use crate::data::Example;
use crate::error::{Error, Result};
use crate::prompt::chat_template::Message;

/// A task's compiled system and user templates.
#[derive(Debug)]
pub struct TaskPrompt {
    task: String,
    env: Environment<'static>,
    /// Template files, for error messages.
    system_path: PathBuf,
    user_path: PathBuf,
    /// Task-level variables every render sees.
    globals: Vec<(&'static str, Value)>,
}

const SYSTEM: &str = "system";
const USER: &str = "user";

impl TaskPrompt {
    /// Read and compile `<prompts_dir>/<task>/{system,user}` as named by the task config.
    pub fn load(prompts_dir: &Path, task: &TaskConfig) -> Result<Self> {
        let dir = prompts_dir.join(&task.id);
        let system_path = dir.join(&task.prompts.system);
        let user_path = dir.join(&task.prompts.user);
        let read = |p: &Path, field: &str| {
            std::fs::read_to_string(p).map_err(|e| {
                Error::MissingInput(format!(
                    "{}: {e}; configs/tasks/{}.yaml field `prompts.{field}` must name a file in {}",
                    p.display(),
                    task.id,
                    dir.display()
                ))
            })
        };
        let system = read(&system_path, SYSTEM)?;
        let user = read(&user_path, USER)?;
        Self::from_sources(task, &system, &user, system_path, user_path)
    }

    /// Compile templates given as text (tests; `*_path` only label error messages).
    pub fn from_sources(
        task: &TaskConfig,
        system: &str,
        user: &str,
        system_path: PathBuf,
        user_path: PathBuf,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Prompt files end with a newline that is not part of the message.
        env.set_keep_trailing_newline(false);
        for (name, src, path) in [(SYSTEM, system, &system_path), (USER, user, &user_path)] {
            env.add_template_owned(name.to_string(), src.to_string())
                .map_err(|e| Error::BadFile {
                    path: path.clone(),
                    message: format!("cannot compile the prompt template: {e}"),
                })?;
        }
        let globals = vec![
            ("labels", Value::from_serialize(&task.answer.labels)),
            (
                "options_letters",
                Value::from_serialize(&task.answer.options),
            ),
            (
                "no_answer",
                Value::from(task.answer.no_answer.clone().unwrap_or_default()),
            ),
        ];
        Ok(Self {
            task: task.id.clone(),
            env,
            system_path,
            user_path,
            globals,
        })
    }

    /// The system and user messages for one example.
    pub fn messages(&self, ex: &Example) -> Result<Vec<Message>> {
        let mut ctx: Vec<(String, Value)> = self
            .globals
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ctx.extend(
            ex.inputs
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str()))),
        );
        let ctx = Value::from_iter(ctx);
        let render = |name: &str, path: &Path| -> Result<String> {
            let t = self.env.get_template(name).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            t.render(&ctx).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "example `{}` of task `{}`: {}; the template may only use the example's inputs ({}) and labels, options_letters, no_answer",
                    ex.id,
                    self.task,
                    e.to_string().replace('\n', " "),
                    ex.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        };
        Ok(vec![
            Message::system(render(SYSTEM, &self.system_path)?),
            Message::user(render(USER, &self.user_path)?),
        ])
    }
}
