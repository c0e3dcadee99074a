# exliar as a Nix flake: the package, an overlay, and a NixOS module for
# exliar itself (nix/module.nix). Build: `nix build`; NixOS: add
# `exliar.nixosModules.default` to your modules. Checked here with
# `nix-instantiate --parse` (tests/packaging.rs); evaluating against
# nixpkgs needs the network: `nix flake check` by hand.
{
  description = "exliar: give a GPU to a VM or a container, safely";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        exliar = pkgs.callPackage ./nix/package.nix { src = self; };
        default = exliar;
      });

      overlays.default = final: prev: {
        exliar = final.callPackage ./nix/package.nix { src = self; };
      };

      nixosModules.default = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
    };
}
