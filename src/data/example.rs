//! The one record type that flows from `prepare` to every consumer (prompting, training,
//! evaluation, scoring).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One task instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// Stable id, unique within the task (the dataset's own id where it has one).
    pub id: String,
    pub task: String,
    /// Named variables for the prompt templates in prompts/<task>/ (`text`, `question`, …).
    pub inputs: BTreeMap<String, String>,
    /// The gold answer in structured form, for scoring.
    pub answer: Answer,
    /// The answer written exactly as the model should produce it: the training target and
    /// the demonstration in 5-shot prompts.
    pub target: String,
    /// Stratification key: class label, `present`/`absent`, option letter; none for code.
    pub stratum: Option<String>,
}

impl Example {
    /// The input a long-context step works on (cutting to fit a window, compressing): its
    /// `context`, else its longest input (ETHIC's user message holds the document).
    pub fn long_input(&self) -> Option<(&String, &String)> {
        self.inputs
            .get_key_value("context")
            .or_else(|| self.inputs.iter().max_by_key(|(_, v)| v.len()))
    }
}

/// A gold answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// One class out of the task's label set.
    Label { label: String },
    /// Extracted spans of the input (empty: the clause is absent).
    Spans { spans: Vec<Span> },
    /// One lettered option of a multiple-choice question.
    Choice { option: String, text: String },
    /// Reference code and the asserts that check a solution.
    Code {
        reference: String,
        tests: Vec<String>,
        setup: String,
        challenge_tests: Vec<String>,
    },
    /// Free-text answers; any one of them is right (scored max over them).
    Text { answers: Vec<String> },
    /// Items of a list answer, compared as a set.
    List { items: Vec<String> },
    /// Ids of the relevant passages (as numbered in the prompt's context).
    Retrieval { relevant: Vec<String> },
    /// Reference summaries (scored max over them).
    Summary { references: Vec<String> },
}

/// A character span of an input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    pub text: String,
    /// Character (not byte) offset into the context, as in SQuAD.
    pub start: usize,
}
