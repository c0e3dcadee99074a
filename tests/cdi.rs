use container_device_interface as _cdi;
