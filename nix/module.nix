# NixOS module for exliar itself.
#
#   programs.exliar.enable = true;          # the command, its man pages,
#                                           # completions and exliar-recover
#   services.exliar.isolation = {           # a GPU for VFIO at boot
#     enable = true;
#     gpu = "0000:01:00.0";
#     ids = [ "10de:2504" "10de:228e" ];    # the card's functions
#     drivers = [ "nouveau" "nvidia" "nvidia_drm" "snd_hda_intel" ];
#     iommu = "intel";                      # "intel", "amd" or "none"
#   };
#
# The isolation options produce what `exliar plan --format nix` writes for
# the same card: kernelParams, initrd modules and modprobe configuration
# (tests/packaging.rs compares the two texts). `exliar plan --format nix`
# fills them in from the hardware; this module is for writing them by hand
# or from a fleet's inventory. byAddress binds by PCI address (a card with
# the same ids stays the host's) through driver_override in the initrd.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.exliar.isolation;
  softdeps = map (d: "softdep ${d} pre: vfio-pci") cfg.drivers;
  functions = if cfg.functions == [ ] then [ cfg.gpu ] else cfg.functions;
in
{
  options.programs.exliar.enable = lib.mkEnableOption "exliar, its man pages, completions and the boot-time recovery unit";

  options.services.exliar.isolation = {
    enable = lib.mkEnableOption "boot-time isolation of a GPU for VFIO passthrough";
    gpu = lib.mkOption {
      type = lib.types.strMatching "[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]";
      description = "The GPU to give to vfio-pci (its PCI address).";
    };
    functions = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Every function of the card (GPU, audio, USB); default: the GPU alone.";
    };
    ids = lib.mkOption {
      type = lib.types.listOf (lib.types.strMatching "[0-9a-f]{4}:[0-9a-f]{4}");
      default = [ ];
      description = "vendor:device ids of the card's functions (not with byAddress).";
    };
    byAddress = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Bind by PCI address (driver_override) instead of by ids.";
    };
    drivers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Drivers vfio-pci must load before (softdep).";
    };
    iommu = lib.mkOption {
      type = lib.types.enum [ "intel" "amd" "none" ];
      default = "none";
      description = "intel adds intel_iommu=on (AMD's IOMMU is on by default).";
    };
    iommuPassthrough = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Add iommu=pt.";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf config.programs.exliar.enable {
      environment.systemPackages = [ pkgs.exliar ];
      systemd.packages = [ pkgs.exliar ];
      systemd.services.exliar-recover.wantedBy = [ "sysinit.target" ];
    })
    (lib.mkIf cfg.enable {
      boot.kernelParams =
        lib.optional (cfg.iommu == "intel") "intel_iommu=on"
        ++ lib.optional cfg.iommuPassthrough "iommu=pt";
      boot.initrd.kernelModules = [ "vfio" "vfio_iommu_type1" "vfio_pci" ];
      boot.extraModprobeConfig = lib.concatStringsSep "\n" (
        lib.optional (!cfg.byAddress && cfg.ids != [ ]) "options vfio-pci ids=${lib.concatStringsSep "," cfg.ids}"
        ++ softdeps
      ) + "\n";
      boot.initrd.preDeviceCommands = lib.mkIf cfg.byAddress (lib.concatMapStrings (f: ''
        echo vfio-pci > /sys/bus/pci/devices/${f}/driver_override
      '') functions);
      assertions = [{
        assertion = cfg.byAddress || cfg.ids != [ ];
        message = "services.exliar.isolation: give the card's ids, or byAddress = true";
      }];
    })
  ];
}
