pub mod earlybind;
pub mod editors;
pub mod initramfs;
pub mod modprobe;
