pub(crate) mod bool_rle_vec;
pub(crate) mod tree_ds;
pub(crate) mod tree_op;
