;; A component that imports a capability no percore host provides. It is otherwise a WASI
;; command (it exports `wasi:cli/run`), so the import, not the kind, is what a host refuses.
(component
  (import "acme:secret/vault@1.0.0" (instance $vault
    (export "open" (func (param "name" string) (result u32)))))
  (core module $m
    (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))
