;; A bare core module, as tutorials write them: one exported function of two integers.
;; `percore invoke sum.wasm --args 5 2` prints 7.
(module
  (func (export "sum") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add))
