;; A core module that is no kind of guest: not a component, and it imports a memory from `env`,
;; which neither a bare module (only `platform.now`) nor a WASI command may import.
(module
  (import "env" "memory" (memory 1))
  (func (export "handle") (result i32) i32.const 0))
