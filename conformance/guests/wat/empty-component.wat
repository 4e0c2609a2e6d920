;; A component with no imports and no exports.
(component)
