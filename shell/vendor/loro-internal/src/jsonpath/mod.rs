pub mod ast;
pub mod errors;
pub mod jsonpath_impl;
pub mod subscription;

pub use subscription::SubscribeJsonPathCallback;
pub mod parser;

pub use ast::Query;
pub use parser::JSONPathParser;
