//! numpy arrays in and out of kiln tensors.
//!
//! In: a C-contiguous, aligned array of the input's dtype becomes a tensor
//! viewing the array's memory (the tensor keeps the array alive); anything
//! else is converted once by numpy (`asarray(order="C")` with the input's
//! dtype) and the copy is viewed the same way. A conversion that could change
//! values beyond rounding (floats into integers, integers that do not fit) is
//! refused with an [`InputError`](crate::errors::InputError) naming the input.
//!
//! Out: a tensor whose buffer nothing else holds (a native run's output
//! buffer, which kiln hands over; see `Executable::run_exclusive`) becomes a
//! numpy array owning that buffer, without a copy; a shared buffer (an output
//! that is a model constant, say) is copied so that writing to the array
//! never reaches kiln's memory. bfloat16 has no numpy dtype: such outputs come back as float32.

use std::ffi::c_void;

use bytes::{Bytes, BytesMut};
use kiln_ir::{DType, Tensor};
use numpy::npyffi::{self, NPY_ARRAY_CARRAY, PY_ARRAY_API};
use numpy::{PyArrayDescr, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::input_error;

/// The numpy dtype name of a kiln dtype (`bfloat16` and the low-precision
/// names are ml_dtypes', whose one-byte-per-element layout is kiln's).
pub fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::I16 => "int16",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::U16 => "uint16",
        DType::U32 => "uint32",
        DType::U64 => "uint64",
        DType::Bool => "bool",
        DType::F8E4M3FN => "float8_e4m3fn",
        DType::F8E4M3FNUZ => "float8_e4m3fnuz",
        DType::F8E5M2 => "float8_e5m2",
        DType::F8E5M2FNUZ => "float8_e5m2fnuz",
        DType::F8E8M0 => "float8_e8m0fnu",
        DType::F4E2M1 => "float4_e2m1fn",
        DType::I4 => "int4",
        DType::U4 => "uint4",
        DType::I2 => "int2",
        DType::U2 => "uint2",
        // A sequence or optional's encoding (refused at the boundary).
        DType::List => "uint8",
    }
}

/// Low-precision dtypes are numpy dtypes only once `ml_dtypes` is imported:
/// imports it, or fails naming the value and its dtype.
fn require_ml_dtypes(py: Python<'_>, what: &str, dtype: DType) -> PyResult<()> {
    if dtype == DType::List {
        return Err(input_error(format!(
            "{what} is an ONNX sequence or optional, which the Python package does not pass yet (the kiln command and the Rust library do)"
        )));
    }
    if dtype.is_low_precision() {
        py.import("ml_dtypes").map_err(|e| {
            input_error(format!(
                "{what} is {dtype} ({}), which numpy holds only with the ml_dtypes package: {e}",
                numpy_name(dtype)
            ))
        })?;
    }
    Ok(())
}

/// The array a tensor of this dtype is read from: numpy's own dtype, or
/// float32 for bfloat16 (narrowed by kiln).
fn carrier(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "float32",
        d => numpy_name(d),
    }
}

/// Python memory a tensor views: the object that owns it, kept alive (and
/// released under the GIL, by PyO3, once the tensor is gone).
struct PyMemory {
    _owner: Py<PyAny>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the memory is plain bytes owned by `_owner`, which lives as long as
// this value; kiln only reads it.
unsafe impl Send for PyMemory {}
unsafe impl Sync for PyMemory {}

impl AsRef<[u8]> for PyMemory {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr..ptr+len` is the data of the array `_owner` holds.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// `value` (an array, or anything `numpy.asarray` takes) as a tensor of
/// `dtype` for the input `name`.
pub fn tensor_from_py(value: &Bound<'_, PyAny>, name: &str, dtype: DType) -> PyResult<Tensor> {
    let py = value.py();
    let np = py.import("numpy")?;
    let array = match value.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => np
            .call_method1("asarray", (value,))
            .map_err(|e| input_error(format!("input `{name}` is not an array: {e}")))?
            .cast_into::<PyUntypedArray>()
            .map_err(|e| input_error(format!("input `{name}` is not an array: {e}")))?,
    };
    let have = array.dtype();
    require_ml_dtypes(py, &format!("input `{name}`"), dtype)?;
    let want = PyArrayDescr::new(py, carrier(dtype))?;
    let bf16_given =
        dtype == DType::BF16 && have.itemsize() == 2 && dtype_name(&have)? == "bfloat16";
    // `asarray(order="C")`, not `ascontiguousarray`, which turns a 0-d array
    // into a 1-d one.
    let kwargs = PyDict::new(py);
    kwargs.set_item("order", "C")?;
    let array = if bf16_given {
        np.call_method("asarray", (&array,), Some(&kwargs))?
            .cast_into::<PyUntypedArray>()?
    } else {
        if !have.is_equiv_to(&want) {
            check_cast(&np, &array, &have, &want, name, dtype)?;
        }
        kwargs.set_item("dtype", &want)?;
        np.call_method("asarray", (&array,), Some(&kwargs))?
            .cast_into::<PyUntypedArray>()?
    };
    let array = if array.is_aligned() {
        array
    } else {
        np.call_method1("array", (&array,))?
            .cast_into::<PyUntypedArray>()?
    };
    let shape = array.shape().to_vec();
    let len = array.len() * array.dtype().itemsize();
    // SAFETY: a numpy array's `data` points at its elements.
    let ptr = unsafe { (*array.as_array_ptr()).fields.data as *const u8 };
    let bytes = Bytes::from_owner(PyMemory {
        _owner: array.into_any().unbind(),
        ptr,
        len,
    });
    let tensor = if dtype == DType::BF16 && !bf16_given {
        Tensor::from_bytes(DType::F32, shape, bytes)
            .map_err(|e| input_error(format!("input `{name}`: {e}")))?
            .cast(DType::BF16)
    } else {
        Tensor::from_bytes(dtype, shape, bytes)
            .map_err(|e| input_error(format!("input `{name}`: {e}")))?
    };
    Ok(tensor)
}

/// numpy's name of a dtype (`float32`, `bfloat16`).
fn dtype_name(d: &Bound<'_, PyArrayDescr>) -> PyResult<String> {
    d.getattr("name")?.extract()
}

/// Refuses a conversion that could change values beyond rounding: floats or
/// complex numbers into integers or bools, and integers that do not fit.
fn check_cast(
    np: &Bound<'_, PyModule>,
    array: &Bound<'_, PyUntypedArray>,
    have: &Bound<'_, PyArrayDescr>,
    want: &Bound<'_, PyArrayDescr>,
    name: &str,
    dtype: DType,
) -> PyResult<()> {
    let (from, to) = (have.kind(), want.kind());
    let refuse = |why: &str| {
        input_error(format!(
            "input `{name}` is {} but the model takes {}{why}",
            dtype_name(have).unwrap_or_else(|_| "?".into()),
            numpy_name(dtype)
        ))
    };
    let numeric = |k: u8| matches!(k, b'b' | b'i' | b'u' | b'f');
    if !numeric(from) {
        return Err(refuse(""));
    }
    match (from, to) {
        // Rounding to a narrower float is what the model computes in anyway.
        (_, b'f') => Ok(()),
        (b'f', _) => Err(refuse(" (floats are not converted to integers)")),
        (b'b', _) => Ok(()),
        (_, b'b') => Err(refuse(" (give a bool array)")),
        _ => {
            if array.len() == 0 {
                return Ok(());
            }
            let safe: bool = np.call_method1("can_cast", (have, want))?.extract()?;
            if safe {
                return Ok(());
            }
            // Integers into a narrower integer type: only when every value fits.
            let info = np.call_method1("iinfo", (want,))?;
            let (lo, hi): (i128, i128) = (
                info.getattr("min")?.extract()?,
                info.getattr("max")?.extract()?,
            );
            let min: i128 = array.call_method0("min")?.extract()?;
            let max: i128 = array.call_method0("max")?.extract()?;
            if min < lo || max > hi {
                return Err(refuse(&format!(
                    " and holds values in [{min}, {max}], outside {}'s range",
                    numpy_name(dtype)
                )));
            }
            Ok(())
        }
    }
}

/// The buffer a returned numpy array owns.
#[pyclass(frozen, module = "kiln")]
struct KilnBuffer {
    _data: Bytes,
}

/// `tensor` as a numpy array that owns its buffer (see the module docs);
/// `exclusive`: nothing else holds the buffer, so the array may own it
/// without a copy.
pub fn tensor_to_py(py: Python<'_>, tensor: Tensor, exclusive: bool) -> PyResult<Bound<'_, PyAny>> {
    let (tensor, exclusive) = if tensor.dtype() == DType::BF16 {
        (tensor.cast(DType::F32), true)
    } else {
        (tensor, exclusive)
    };
    let dtype = tensor.dtype();
    let shape: Vec<usize> = tensor.shape().to_vec();
    let item = dtype.size();
    let bytes = tensor.into_bytes();
    let aligned = (bytes.as_ptr() as usize).is_multiple_of(item.max(1));
    let data = if (exclusive || bytes.is_unique()) && aligned {
        bytes
    } else {
        BytesMut::from(&bytes[..]).freeze()
    };
    require_ml_dtypes(py, "an output", dtype)?;
    let descr = PyArrayDescr::new(py, numpy_name(dtype))?;
    let mut dims: Vec<npyffi::npy_intp> = shape.iter().map(|&d| d as npyffi::npy_intp).collect();
    let ptr = data.as_ptr() as *mut c_void;
    let owner = Bound::new(py, KilnBuffer { _data: data })?;
    // SAFETY: `descr` is a new reference NewFromDescr steals; `ptr` points at
    // `numel * item` bytes that `owner` keeps alive and that nothing else
    // reads or writes (an exclusive buffer, or a copy), so the array may
    // write them; SetBaseObject steals the reference to `owner` so that the
    // array releases it when freed.
    unsafe {
        let array = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
            descr.into_dtype_ptr(),
            dims.len() as i32,
            dims.as_mut_ptr(),
            std::ptr::null_mut(),
            ptr,
            NPY_ARRAY_CARRAY,
            std::ptr::null_mut(),
        );
        if array.is_null() {
            return Err(PyErr::fetch(py));
        }
        let array = Bound::from_owned_ptr(py, array);
        if PY_ARRAY_API.PyArray_SetBaseObject(
            py,
            array.as_ptr() as *mut npyffi::PyArrayObject,
            owner.into_ptr(),
        ) != 0
        {
            return Err(PyErr::fetch(py));
        }
        Ok(array)
    }
}
