pub use loro_common::{
    CounterSpan, HasCounter, HasCounterSpan, HasId, HasIdSpan, HasLamport, HasLamportSpan, IdSpan,
};
