//! ONNX op converters, one module per op family; each registers its ops.

mod composite;
mod contrib;
mod control;
mod elementwise;
mod layout;
mod list;
mod misc;
mod ml;
mod nn;
mod reduce;
mod window;

use super::Registry;

/// Registers every family's converters.
pub fn register_all(reg: &mut Registry) {
    elementwise::register(reg);
    reduce::register(reg);
    layout::register(reg);
    nn::register(reg);
    composite::register(reg);
    control::register(reg);
    list::register(reg);
    misc::register(reg);
    contrib::register(reg);
    ml::register(reg);
}
