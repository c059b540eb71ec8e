declare module "node-gyp-build" {
  /** Loads the prebuilt or built .node for the package at `dir`. */
  function load(dir: string): unknown;
  namespace load {
    /** Path of the .node file load() would pick. */
    function resolve(dir: string): string;
  }
  export = load;
}
