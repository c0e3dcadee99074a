# tests/packaging.rs: evaluates nix/module.nix with the isolation options
# read back from an `exliar plan --format nix` module, with a stub of the few
# nixpkgs lib functions the module uses (no nixpkgs here), and returns both
# modules' boot settings for comparison.
{ module, plan, ids, drivers, iommu }:
let
  lib = {
    mkEnableOption = d: { };
    mkOption = o: o;
    types = { listOf = t: t; str = null; bool = null; strMatching = r: null; enum = l: null; };
    mkMerge = l: l;
    mkIf = c: v: if c then v else { };
    optional = c: v: if c then [ v ] else [ ];
    concatStringsSep = builtins.concatStringsSep;
    concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
  };
  isolation = {
    enable = true; gpu = "0000:00:00.0"; functions = [ ]; inherit ids drivers iommu;
    byAddress = false; iommuPassthrough = false;
  };
  ours = builtins.elemAt (import module {
    config = { programs.exliar.enable = false; services.exliar.isolation = isolation; };
    inherit lib; pkgs = { };
  }).config 1;
  theirs = import plan { config = { }; inherit lib; };
  pick = m: { inherit (m.boot) kernelParams extraModprobeConfig; modules = m.boot.initrd.kernelModules; };
in { ours = pick ours; theirs = pick theirs; }
