;; A component that imports a capability no percore host provides.
(component
  (import "acme:secret/vault@1.0.0" (instance $vault
    (export "open" (func (param "name" string) (result u32)))))
  (core module $m
    (func (export "answer") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func $answer (result u32) (canon lift (core func $i "answer")))
  (instance $thing (export "answer" (func $answer)))
  (export "example:other/thing@1.0.0" (instance $thing)))
